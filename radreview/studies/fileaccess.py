"""Opening only regular files: never a FIFO, a device or a socket; symlink loops named, not raised.

A FIFO named ``x.dcm`` blocks ``open()`` forever and a character device streams without end, so
files are opened non-blocking and checked with ``fstat`` on the open descriptor (the check and
the read see the same file, whatever is renamed in between). ``Path.resolve()`` raises
``RuntimeError``/``OSError`` on symlink loops; :func:`resolved` never does.
"""

from __future__ import annotations

import errno
import os
import stat
from pathlib import Path
from typing import BinaryIO

from radreview.studies.errors import StudyLoadError

_NONBLOCK = getattr(os, "O_NONBLOCK", 0)
_BINARY = getattr(os, "O_BINARY", 0)  # Windows: no newline translation


def kind_of(mode: int) -> str:
    """What a non-regular file is, in words."""
    if stat.S_ISDIR(mode):
        return "a folder"
    if stat.S_ISFIFO(mode):
        return "a named pipe (FIFO)"
    if stat.S_ISCHR(mode):
        return "a character device"
    if stat.S_ISBLK(mode):
        return "a block device"
    if stat.S_ISSOCK(mode):
        return "a socket"
    return "not a regular file"


def os_error_reason(exc: OSError) -> str:
    """A user's words for an OSError met while opening or reading a file."""
    if exc.errno == errno.ELOOP:
        return "symbolic link loop (the link points, directly or through others, back at itself)"
    if isinstance(exc, PermissionError):
        return "permission denied"
    if isinstance(exc, FileNotFoundError):
        # A dangling symlink also lands here: the name exists, its target does not.
        return "file not found (it may have been moved, or it is a link to a missing file)"
    if isinstance(exc, IsADirectoryError):
        return "is a folder, not a file"
    return f"could not be read ({exc.strerror or exc})"


def not_regular_reason(path: str | Path) -> str | None:
    """None if ``path`` is (a link to) a regular file, else why it will not be read."""
    try:
        mode = os.stat(path).st_mode
    except OSError as exc:
        return os_error_reason(exc)
    except ValueError as exc:  # embedded NUL byte
        return f"not a usable file name ({exc})"
    if not stat.S_ISREG(mode):
        return f"not a regular file: it is {kind_of(mode)}" if not stat.S_ISDIR(mode) else "is a folder, not a file"
    return None


def open_regular(path: str | Path) -> BinaryIO:
    """Open ``path`` for binary reading if it is a regular file; else raise :class:`StudyLoadError`.

    O_NONBLOCK makes opening a FIFO return at once; regular files ignore the flag.
    """
    try:
        fd = os.open(path, os.O_RDONLY | _NONBLOCK | _BINARY)
    except OSError as exc:
        raise StudyLoadError(path, os_error_reason(exc)) from exc
    except ValueError as exc:
        raise StudyLoadError(path, f"not a usable file name ({exc})") from exc
    try:
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):
            raise StudyLoadError(path, f"not a regular file: it is {kind_of(mode)}")
        if _NONBLOCK:
            os.set_blocking(fd, True)
        return _named(fd, path)
    except BaseException:
        os.close(fd)
        raise


def _named(fd: int, path: str | Path) -> BinaryIO:
    # open(fd) names the file by its descriptor; pydicom records ``.name`` as the file name and
    # reopens it by that name for deferred values, so give it the path.
    handle = open(fd, "rb", closefd=True)  # noqa: SIM115 - the caller closes it
    handle.raw.name = os.fspath(path)  # type: ignore[attr-defined, misc]
    return handle  # type: ignore[return-value]


def file_size(handle: BinaryIO) -> int:
    return os.fstat(handle.fileno()).st_size


def resolved(path: Path) -> Path:
    """``path.resolve()``, or the absolute path when it cannot be resolved (loops, permissions)."""
    try:
        return path.resolve()
    except (OSError, RuntimeError, ValueError):
        return Path(os.path.abspath(path))


def is_within(path: Path, root: Path) -> bool:
    """Whether ``path`` (links followed) lies inside ``root``; False when either cannot be resolved."""
    try:
        target = path.resolve(strict=True)
        base = root.resolve(strict=True)
    except (OSError, RuntimeError, ValueError):
        return False
    return target == base or base in target.parents
