"""The one exception type for user mistakes.

Anything raised as :class:`FeedwiseError` is printed by the CLI as a single line
(``feedwise: error: ...``) with a non-zero exit, never as a traceback.
"""

import errno


class FeedwiseError(Exception):
    """A problem with the user's input or environment, explained in one line."""


# errno values that say the environment (disk, permissions, path) failed, not feedwise
ENVIRONMENT_ERRNOS = {errno.ENOSPC: "no space left on the device", errno.EDQUOT: "disk quota exceeded",
                       errno.EROFS: "read-only file system", errno.EACCES: "permission denied",
                       errno.EPERM: "operation not permitted", errno.ENAMETOOLONG: "file name too long",
                       errno.ENOTDIR: "a part of the path is a file, not a folder", errno.EFBIG: "file too large",
                       errno.EIO: "input/output error", errno.EISDIR: "it is a folder"}
# what SQLite (Optuna's default storage) says when the disk, not the code, is the problem
_SQLITE_ENVIRONMENT = ("database or disk is full", "attempt to write a readonly database", "unable to open database file",
                       "disk i/o error")


def environment_error(exc: BaseException, out: str | None = None) -> str | None:
    """One line for an exception caused by the environment, looked for along its chain of causes, or
    None when it is not one (then it is a bug). Optuna, for one, hides a full disk behind its own
    ``AssertionError: Should not reach.``; the real cause is in the chain."""
    seen = set()
    e: BaseException | None = exc
    while e is not None and id(e) not in seen:
        seen.add(id(e))
        if isinstance(e, OSError) and e.errno in ENVIRONMENT_ERRNOS:
            where = f"cannot write {e.filename}: " if e.filename else ""
            return f"{where}{ENVIRONMENT_ERRNOS[e.errno]}"
        text = str(e).lower()
        for phrase in _SQLITE_ENVIRONMENT:
            if phrase in text:
                db = f" ({out}/study.db)" if out else ""
                return f"the Optuna storage{db} cannot be written: {phrase}"
        e = e.__cause__ or e.__context__
    return None
