"""Files that survive crashes, full disks and other processes: atomic writes, checked reads, claims.

- :func:`atomic_writer` (and :func:`write_text`, :func:`write_bytes`, :func:`write_json`,
  :func:`write_npy`, :func:`write_npz`): a temp file in the same folder, fsync, rename; the mode a
  plain ``open`` gives (0666 minus the umask), never mkstemp's owner-only 0600. A reader sees the old
  file or the whole new one.
- :func:`read_json`, :func:`read_npy`, :func:`read_npz`: a missing, truncated or foreign file is one
  :class:`FeedwiseError` naming it.
- :func:`write_error`: a failed write (full disk, read-only file system, folder deleted during the
  run, ...) as one error naming the file.
- :class:`Claim`: an exclusive claim on a piece of work (``flock``) that dies with its holder.
"""

from __future__ import annotations

import contextlib
import errno
import json
import math
import os
import secrets
import socket
import time
from pathlib import Path
from typing import IO, Any, Callable, Iterator

from feedwise.errors import ENVIRONMENT_ERRNOS, FeedwiseError


def jsonable(obj: Any) -> Any:
    """JSON has no NaN/inf: write them as null."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {str(k): jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [jsonable(v) for v in obj]
    if hasattr(obj, "item") and callable(obj.item) and getattr(obj, "ndim", 1) == 0:
        return jsonable(obj.item())
    if hasattr(obj, "tolist"):
        return jsonable(obj.tolist())
    return obj


# --------------------------------------------------------------------------- errors of the file system
def write_error(e: OSError, path: str | Path) -> FeedwiseError:
    """A failed write as one line naming the file (and what to do where that is clear)."""
    path = Path(path)
    if e.errno == errno.ENOENT:
        missing = next((p for p in reversed(path.parents) if not p.exists()), path.parent)
        return FeedwiseError(f"cannot write {path}: the folder {missing} does not exist (deleted during the run?)")
    why = ENVIRONMENT_ERRNOS.get(e.errno, e.strerror or str(e))
    return FeedwiseError(f"cannot write {path}: {why}")


def mkdir(path: str | Path, parents: bool = False) -> Path:
    """``path.mkdir(exist_ok=True)`` with a failure as one line. Without ``parents`` a folder
    deleted during the run is not silently created again."""
    path = Path(path)
    try:
        path.mkdir(parents=parents, exist_ok=True)
    except FileExistsError:
        raise FeedwiseError(f"cannot create the folder {path}: a file of that name exists") from None
    except OSError as e:
        raise write_error(e, path) from None
    return path


# --------------------------------------------------------------------------- atomic writing
@contextlib.contextmanager
def atomic_writer(path: str | Path, binary: bool = False, newline: str | None = None) -> Iterator[IO]:
    """Yield a file whose content replaces ``path`` in one step once the block ends without error.

    The temp file sits next to ``path`` (same file system: the rename is atomic), is fsync'ed
    before the rename and is removed on any failure, so a reader sees the old file or the whole
    new one, never a part. Its mode is what ``open`` gives (0666 minus the umask), not mkstemp's
    owner-only 0600. The folder must exist (it is never created again behind a run's back)."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}-{secrets.token_hex(4)}.tmp")
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    except OSError as e:
        raise write_error(e, path) from None
    try:
        with (os.fdopen(fd, "wb") if binary else os.fdopen(fd, "w", encoding="utf-8", newline=newline)) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError as e:
        unlink_quietly(tmp)
        raise write_error(e, path) from None
    except BaseException:
        unlink_quietly(tmp)
        raise


def write_new(path: Path, data: bytes) -> None:
    """Create ``path`` (it must not exist), write ``data``, fsync."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]
        os.fsync(fd)
    finally:
        os.close(fd)


def unlink_quietly(path: Path) -> None:
    try:
        os.unlink(path)
    except OSError:
        pass


def write_text(path: str | Path, text: str) -> None:
    with atomic_writer(path) as f:
        f.write(text)


def write_bytes(path: str | Path, data: bytes) -> None:
    with atomic_writer(path, binary=True) as f:
        f.write(data)


def write_json(path: str | Path, obj: Any) -> None:
    """Write JSON atomically (NaN/inf become null)."""
    with atomic_writer(path) as f:
        json.dump(jsonable(obj), f, indent=2, sort_keys=False)
        f.write("\n")


def write_npy(path: str | Path, array) -> None:
    import numpy as np

    with atomic_writer(path, binary=True) as f:
        np.save(f, array, allow_pickle=False)


def write_npz(path: str | Path, **arrays) -> None:
    import numpy as np

    with atomic_writer(path, binary=True) as f:
        np.savez(f, **arrays)


# --------------------------------------------------------------------------- reading
def read_json(path: str | Path, expect: type | None = dict) -> Any:
    """Read a JSON file; a missing or damaged one (or, by default, one not holding an object) is
    a :class:`FeedwiseError` naming the file."""
    path = Path(path)
    try:
        with open(path, encoding="utf-8") as f:
            obj = json.load(f)
    except FileNotFoundError:
        raise FeedwiseError(f"missing file {path}") from None
    except ValueError as e:   # JSONDecodeError, UnicodeDecodeError
        raise FeedwiseError(f"corrupt JSON file {path}: {first_line(e) or type(e).__name__}") from None
    except OSError as e:
        raise FeedwiseError(f"cannot read {path}: {e.strerror or e}") from None
    if expect is not None and not isinstance(obj, expect):
        raise FeedwiseError(f"corrupt JSON file {path}: it holds a {type(obj).__name__}, not a JSON "
                            f"{'object' if expect is dict else expect.__name__}")
    return obj


def first_line(e: BaseException, n: int = 120) -> str:
    """The first line of an exception's message, at most ``n`` characters ("" when it has none)."""
    s = str(e).strip()
    s = s.splitlines()[0] if s else ""
    return s if len(s) <= n else s[:n] + "..."


def read_npy(path: str | Path):
    """An array saved by :func:`write_npy`; a missing, truncated or foreign file is one line."""
    import numpy as np

    path = Path(path)
    try:
        return np.load(path, allow_pickle=False)
    except FileNotFoundError:
        raise FeedwiseError(f"missing file {path}") from None
    except (ValueError, EOFError, OSError) as e:
        raise FeedwiseError(f"corrupt or truncated file {path}: {first_line(e) or type(e).__name__}") from None


def read_npz(path: str | Path) -> dict:
    """All arrays of an ``.npz`` file, loaded now (so a damaged member fails here, naming the file)."""
    import zipfile

    import numpy as np

    path = Path(path)
    try:
        with np.load(path, allow_pickle=False) as z:
            return {k: np.asarray(z[k]) for k in z.files}
    except FileNotFoundError:
        raise FeedwiseError(f"missing file {path}") from None
    except (ValueError, EOFError, OSError, KeyError, zipfile.BadZipFile) as e:
        raise FeedwiseError(f"corrupt or truncated file {path}: {first_line(e) or type(e).__name__}") from None


# --------------------------------------------------------------------------- claims
class Claim:
    """An exclusive claim on a piece of work: ``fcntl.flock`` on a small file that names the
    holder (host, pid, since when). The kernel drops the lock when the holder ends, however it
    ends, so a claim left by a dead process is free again (stale claims are reclaimed by
    themselves). Re-entrant within one object; two objects (or processes) exclude each other."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self._fd: int | None = None
        self._depth = 0

    @property
    def held(self) -> bool:
        return self._depth > 0

    def acquire(self, wait: bool = True) -> bool:
        """Take the claim; without ``wait``, return False at once when another holds it."""
        if self._depth:
            self._depth += 1
            return True
        import fcntl

        try:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o666)
        except OSError as e:
            if e.errno not in (errno.EROFS, errno.EACCES) or not self.path.exists():
                raise write_error(e, self.path) from None
            # a finished study on a read-only mount: a lock taken on a read-only descriptor still excludes
            fd = os.open(self.path, os.O_RDONLY)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
        except BlockingIOError:
            os.close(fd)
            return False
        except OSError as e:
            if e.errno not in (errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOSYS, errno.EINVAL):
                os.close(fd)
                raise write_error(e, self.path) from None
            # a file system without locks: run unguarded rather than not at all
        except BaseException:
            os.close(fd)
            raise
        try:
            os.ftruncate(fd, 0)
            os.pwrite(fd, json.dumps({"host": socket.gethostname(), "pid": os.getpid(),
                                      "since": time.strftime("%Y-%m-%d %H:%M:%S")}).encode(), 0)
        except OSError:
            pass  # the name of the holder is a courtesy; the lock is what counts
        self._fd, self._depth = fd, 1
        return True

    def release(self) -> None:
        if not self._depth:
            return
        self._depth -= 1
        if self._depth:
            return
        fd, self._fd = self._fd, None
        try:
            os.ftruncate(fd, 0)
        except OSError:
            pass
        os.close(fd)   # closing the descriptor releases the flock

    def holder(self) -> str:
        """Who holds the claim, as far as its file says."""
        try:
            info = json.loads(self.path.read_text() or "{}")
            return f"pid {info['pid']} on host {info['host']} (since {info['since']})"
        except (OSError, ValueError, KeyError, TypeError):
            return "another process"

    @contextlib.contextmanager
    def hold(self, wait: bool = True, waiting: Callable[[str], None] | None = None) -> Iterator[bool]:
        """Hold the claim for the block. Yields False (without waiting) when another process holds it
        and ``wait`` is false; with ``wait``, ``waiting(holder)`` is called before blocking."""
        got = self.acquire(wait=False)
        if not got and wait:
            if waiting is not None:
                waiting(self.holder())
            got = self.acquire(wait=True)
        try:
            yield got
        finally:
            if got:
                self.release()

    def __del__(self):
        if self._fd is not None:
            try:
                os.close(self._fd)
            except OSError:
                pass
