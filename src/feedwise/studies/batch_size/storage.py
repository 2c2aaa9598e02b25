"""The batch-size study's Optuna storage: URLs, secrets, and surviving a short outage.

- :func:`normalize_url` makes the documented ``postgresql://USER@HOST/DB`` (and ``postgres://``)
  an explicit ``postgresql+psycopg://`` URL (psycopg 3, the ``postgres`` extra), so which driver
  runs does not depend on the SQLAlchemy version (2.0 maps the plain scheme to psycopg2, 2.1 to
  psycopg 3). A URL that names its driver (``postgresql+psycopg2://``) is kept.
- :func:`redact` / :func:`redact_command` / :func:`redact_text` hide a password (``user:PASS@``
  or ``?password=PASS``) wherever a URL is written or printed (study.json, messages).
- :func:`open_storage` opens any RDB URL (SQLite by default, PostgreSQL for several machines)
  with heartbeats and ``pool_pre_ping``, wrapped in :class:`RetryingStorage`: every storage call
  that fails on the connection (server restarting, network blip, SQLite busy) is retried with
  backoff for up to ``retry_s`` seconds; past that the run ends with one line
  (:class:`StorageUnavailable`, a :class:`~feedwise.errors.FeedwiseError`). The heartbeat thread
  never raises (no thread tracebacks): the main thread reports the outage.

The study's identity in the storage, its trials' points, pruning and rebuilding from the trial
folders live in :mod:`feedwise.studies.batch_size.trials`.
"""

from __future__ import annotations

import logging
import re
import threading
import time
import warnings

from feedwise.errors import FeedwiseError

DEFAULT_RETRY_S = 60.0


# ------------------------------------------------------------------------------- URLs, secrets
def normalize_url(url: str) -> str:
    """The SQLAlchemy URL feedwise opens: ``postgresql://`` / ``postgres://`` -> ``postgresql+psycopg://``."""
    if not isinstance(url, str) or "://" not in url:
        raise FeedwiseError(f"--storage must be a database URL such as sqlite:///PATH/study.db or "
                            f"postgresql://USER@HOST/DB, got {redact(str(url))!r}")
    scheme, rest = url.split("://", 1)
    if scheme.lower() in ("postgresql", "postgres"):
        scheme = "postgresql+psycopg"
    return f"{scheme}://{rest}"


def check_driver(url: str) -> None:
    """A clear line when the URL's database driver is not installed (before anything is written)."""
    scheme = url.split("://", 1)[0].lower()
    need = {"postgresql+psycopg": ("psycopg", "psycopg 3: pip install 'feedwise[postgres]' (psycopg[binary])"),
            "postgresql+psycopg2": ("psycopg2", "psycopg2: pip install psycopg2-binary, or use "
                                                "postgresql://... (psycopg 3, pip install 'feedwise[postgres]')")}
    if scheme in need:
        module, hint = need[scheme]
        try:
            __import__(module)
        except ImportError:
            raise FeedwiseError(f"--storage {redact(url)} needs {hint}") from None


_NETLOC = re.compile(r"^([^/?#]*)(.*)$", re.S)
_QUERY_SECRET = re.compile(r"(?i)([?&](?:password|passwd)=)([^&#]*)")


def redact(url: str) -> str:
    """The URL without its password (``user:***@host``, ``password=***``), for messages and files."""
    if not isinstance(url, str) or "://" not in url:
        return url
    scheme, rest = url.split("://", 1)
    netloc, tail = _NETLOC.match(rest).groups()
    if "@" in netloc:
        userinfo, host = netloc.rsplit("@", 1)
        if ":" in userinfo:
            userinfo = userinfo.split(":", 1)[0] + ":***"
        netloc = f"{userinfo}@{host}"
    return f"{scheme}://{netloc}{_QUERY_SECRET.sub(lambda m: m.group(1) + '***', tail)}"


def secrets_of(url: str) -> list[str]:
    """The password(s) a URL carries, raw and percent-decoded."""
    from urllib.parse import unquote

    if not isinstance(url, str) or "://" not in url:
        return []
    rest = url.split("://", 1)[1]
    netloc, tail = _NETLOC.match(rest).groups()
    found = []
    if "@" in netloc:
        userinfo = netloc.rsplit("@", 1)[0]
        if ":" in userinfo:
            found.append(userinfo.split(":", 1)[1])
    found += [m.group(2) for m in _QUERY_SECRET.finditer(tail)]
    out = []
    for s in found:
        for v in (s, unquote(s)):
            if v and v not in out:
                out.append(v)
    return sorted(out, key=len, reverse=True)


def redact_text(text: str, *urls: str) -> str:
    """``text`` with every password of ``urls`` replaced by ``***`` (error messages from drivers)."""
    text = str(text)
    for url in urls:
        for s in secrets_of(url):
            text = text.replace(s, "***")
    return text


def redact_command(argv: list[str] | None) -> list[str]:
    """A command line with every URL's password hidden (``--storage URL`` and ``--storage=URL``)."""
    out = []
    for arg in argv or []:
        arg = str(arg)
        if "://" in arg:
            head, sep, tail = arg.partition("=") if arg.startswith("--") else ("", "", arg)
            arg = f"{head}{sep}{redact(tail)}" if sep else redact(arg)
        out.append(arg)
    return out


def _first_line(e: BaseException) -> str:
    """The first line of the root cause (Optuna wraps driver errors in a generic message)."""
    seen = set()
    while (e.__cause__ or e.__context__) is not None and id(e) not in seen:
        seen.add(id(e))
        e = e.__cause__ or e.__context__
    lines = [ln.strip() for ln in str(e).splitlines() if ln.strip() and not ln.strip().startswith("(Background")]
    text = lines[0] if lines else type(e).__name__
    return text if len(text) <= 300 else text[:297] + "..."


# ------------------------------------------------------------------------------- retries
class StorageUnavailable(FeedwiseError):
    """The storage stayed unreachable for longer than the retry budget."""


_PERMANENT = re.compile(r"(?i)authentication failed|no password supplied|does not exist|permission denied|"
                        r"unable to open database file|no such table|could not translate host name|"
                        r"name or service not known|invalid (dsn|connection option|integer)|"
                        r"readonly database|disk i/o error|disk image is malformed|database or disk is full")


def is_transient(e: BaseException | None) -> bool:
    """A connection-level failure worth retrying (server restart, dropped connection, SQLite busy);
    not a refused login, a missing database or a bad host name."""
    import sqlalchemy.exc as sx

    seen, c = set(), e
    while c is not None and id(c) not in seen:   # a permanent cause anywhere in the chain decides
        seen.add(id(c))
        if _PERMANENT.search(str(c)):
            return False
        c = c.__cause__ or c.__context__
    seen = set()
    while e is not None and id(e) not in seen:
        seen.add(id(e))
        if isinstance(e, (sx.OperationalError, sx.InterfaceError, sx.PendingRollbackError)):
            return True
        if isinstance(e, sx.DBAPIError) and getattr(e, "connection_invalidated", False):
            return True
        mod = type(e).__module__ or ""
        if mod.startswith(("psycopg", "psycopg2")) and type(e).__name__ in ("OperationalError", "InterfaceError"):
            return True
        e = e.__cause__ or e.__context__
    return False


def _retrying_class():
    from optuna.exceptions import UpdateFinishedTrialError
    from optuna.storages import BaseStorage
    from optuna.storages._heartbeat import BaseHeartbeat

    names = sorted({n for cls in (BaseStorage, BaseHeartbeat) for n, v in vars(cls).items()
                    if callable(v) and not n.startswith("__")})

    def init(self, inner, url: str, retry_s: float):
        self._inner, self._url, self.retry_s = inner, url, float(retry_s)
        self._dead: str | None = None
        self._lock = threading.Lock()

    def call(self, name, *args, **kwargs):
        if self._dead:
            raise StorageUnavailable(self._dead)
        deadline, delay, attempt = None, 0.1, 0
        while True:
            try:
                return getattr(self._inner, name)(*args, **kwargs)
            except UpdateFinishedTrialError:
                # a retried state change whose first attempt did commit before the connection dropped
                if attempt and name == "set_trial_state_values" and self._already(args, kwargs):
                    return True
                raise
            except Exception as e:
                if not is_transient(e):
                    raise
                now = time.monotonic()
                deadline = deadline if deadline is not None else now + self.retry_s
                if now >= deadline:
                    self._dead = (f"storage {redact(self._url)} unreachable for {self.retry_s:g} s "
                                  f"({redact_text(_first_line(e), self._url)}); when it is back, re-run the same "
                                  f"command to resume")
                    raise StorageUnavailable(self._dead) from None
                try:
                    self._inner.remove_session()
                except Exception:
                    pass
                time.sleep(min(delay, max(0.0, deadline - now)))
                delay, attempt = min(2 * delay, 2.0), attempt + 1

    def already(self, args, kwargs) -> bool:
        trial_id = args[0] if args else kwargs.get("trial_id")
        state = args[1] if len(args) > 1 else kwargs.get("state")
        try:
            return self._inner.get_trial(trial_id).state == state
        except Exception:
            return False

    def record_heartbeat(self, trial_id: int) -> None:
        # runs in Optuna's heartbeat thread: never raise there (a thread traceback per outage);
        # a lasting outage is reported once by the main thread
        try:
            call(self, "record_heartbeat", trial_id)
        except Exception:
            pass

    ns = {"__init__": init, "_call": call, "_already": already, "__module__": __name__,
          "__doc__": "Every storage call retried on connection failures for up to ``retry_s`` seconds."}
    for n in names:
        if n == "record_heartbeat":
            ns[n] = record_heartbeat
        else:
            ns[n] = (lambda name: lambda self, *a, **k: self._call(name, *a, **k))(n)
    return type("RetryingStorage", (BaseStorage, BaseHeartbeat), ns)


_RETRYING = None


def RetryingStorage(inner, url: str, retry_s: float = DEFAULT_RETRY_S):  # noqa: N802  (a class, built lazily)
    global _RETRYING
    if _RETRYING is None:
        _RETRYING = _retrying_class()
    return _RETRYING(inner, url, retry_s)


def open_storage(url: str, heartbeat: int = 10, retry_s: float = DEFAULT_RETRY_S):
    """The Optuna storage at ``url`` (normalised), with heartbeats, behind :class:`RetryingStorage`.

    Retries while the server is unreachable and while workers that start together race to
    create the tables; any other problem (bad URL, missing driver, refused login) is one line."""
    import optuna
    from optuna.storages import _CachedStorage

    optuna.logging.set_verbosity(optuna.logging.ERROR)
    url = normalize_url(url)
    check_driver(url)
    engine_kwargs: dict = {"pool_pre_ping": True}
    if url.startswith("sqlite"):
        engine_kwargs = {"connect_args": {"timeout": 60}}
    elif url.startswith("postgresql"):
        engine_kwargs["connect_args"] = {"connect_timeout": 10}
    deadline = time.monotonic() + max(0.0, float(retry_s))
    delay, races, error = 0.2, 0, None
    while True:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            try:
                rdb = optuna.storages.RDBStorage(url, heartbeat_interval=max(1, int(heartbeat)),
                                                 grace_period=max(2, 3 * int(heartbeat)),
                                                 engine_kwargs=engine_kwargs)
                return RetryingStorage(_CachedStorage(rdb), url, retry_s)
            except Exception as e:  # noqa: BLE001  (reported below in one line)
                error = e
        import sqlalchemy.exc as sx

        if isinstance(error, (sx.IntegrityError, sx.ProgrammingError)) and races < 5:
            races += 1  # two workers creating the tables at the same instant
        elif not is_transient(error) or time.monotonic() >= deadline:
            break
        time.sleep(delay)
        delay = min(2 * delay, 2.0)
    raise FeedwiseError(f"cannot open Optuna storage {redact(url)}: {redact_text(_first_line(error), url)}")


# quiet optuna's own logger when imported as a library
logging.getLogger("optuna").setLevel(logging.ERROR)
