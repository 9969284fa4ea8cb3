"""Zip archives of studies (how studies are often shared): unpacked to a temporary folder.

The folder lives until the process ends (the viewer decodes files on demand, so they must stay
on disk while it runs) and is then removed: at normal exit (atexit), on SIGTERM/SIGHUP (a
handler installed by :func:`remove_on_signals`, which ``radreview`` calls at start), and, for a
process killed outright (SIGKILL, a crash), by the next unpack, which removes folders whose
process is gone (the folder name carries the process id).

Unpacking is streamed and counted as it goes, never trusting the sizes the archive declares:
it stops at ``max_zip_bytes`` in all, ``max_zip_members`` members, or a member inflating more
than ``max_zip_ratio`` times its compressed size (what a zip bomb does), and then removes what
it wrote at once.
"""

from __future__ import annotations

import atexit
import os
import re
import shutil
import signal
import sys
import tempfile
import threading
import zipfile
from pathlib import Path, PurePosixPath

from radreview.limits import hint, limits
from radreview.studies.fileaccess import not_regular_reason
from radreview.studies.model import LoadProblem

PREFIX = "radreview-zip-"
_NAME = re.compile(rf"^{re.escape(PREFIX)}(\d+)-")
CHUNK = 1 << 20
# The ratio rule applies past this much output: small members (headers, text) compress wildly.
RATIO_GRACE = 1 << 20

_unpacked: list[Path] = []
_lock = threading.Lock()


class _Refused(Exception):
    pass


def unpack_zip(archive: Path, problems: list[LoadProblem]) -> Path | None:
    """Unpack ``archive`` into a new temporary folder and return it; None (and a problem) if it cannot."""
    reason = not_regular_reason(archive)
    if reason:
        problems.append(LoadProblem(archive, reason))
        return None
    remove_stale_folders()
    folder: Path | None = None
    try:
        with zipfile.ZipFile(archive) as handle:
            members = [m for m in handle.infolist() if not m.is_dir()]
            _check_declared(members)
            folder = Path(tempfile.mkdtemp(prefix=f"{PREFIX}{os.getpid()}-"))
            _remember(folder)
            _extract_all(handle, members, folder)
            return folder
    except _Refused as exc:
        problems.append(LoadProblem(archive, f"zip archive not opened: {exc}"))
    except PermissionError:
        problems.append(LoadProblem(archive, "permission denied"))
    except (zipfile.BadZipFile, EOFError):
        problems.append(LoadProblem(archive, "not a readable zip archive (damaged or truncated)"))
    except NotImplementedError as exc:  # e.g. an unsupported compression method
        problems.append(LoadProblem(archive, f"zip archive uses an unsupported feature ({exc})"))
    except RuntimeError as exc:  # encrypted members
        problems.append(LoadProblem(archive, f"zip archive could not be unpacked ({exc})"))
    except OSError as exc:
        problems.append(LoadProblem(archive, f"zip archive could not be unpacked ({exc.strerror or exc})"))
    except BaseException:
        _forget(folder)  # KeyboardInterrupt, SystemExit: nothing half-written stays behind
        raise
    _forget(folder)
    return None


def _check_declared(members: list[zipfile.ZipInfo]) -> None:
    """Refuse at once what the archive's own directory already says is too much."""
    cap = limits()
    if len(members) > cap.max_zip_members:
        raise _Refused(f"{len(members)} files ({hint('max_zip_members')})")
    declared = sum(m.file_size for m in members)
    if declared > cap.max_zip_bytes:
        raise _Refused(f"it unpacks to {declared / 2**30:.1f} GiB ({hint('max_zip_bytes')})")
    try:
        free = shutil.disk_usage(tempfile.gettempdir()).free
    except OSError:
        return
    if declared > free:
        raise _Refused(f"it unpacks to {declared / 2**30:.1f} GiB, more than the {free / 2**30:.1f} GiB "
                       f"free in {tempfile.gettempdir()}")


def _extract_all(handle: zipfile.ZipFile, members: list[zipfile.ZipInfo], folder: Path) -> None:
    cap = limits()
    total = 0
    for member in members:
        target = _target(folder, member.filename)
        if target is None:
            continue
        target.parent.mkdir(parents=True, exist_ok=True)
        written = 0
        with handle.open(member) as source, open(target, "wb") as out:
            while chunk := source.read(CHUNK):
                written += len(chunk)
                total += len(chunk)
                if total > cap.max_zip_bytes:
                    raise _Refused(f"it unpacks to more than {cap.max_zip_bytes} bytes ({hint('max_zip_bytes')})")
                if written > RATIO_GRACE and written > cap.max_zip_ratio * max(_consumed(source, member), 1):
                    raise _Refused(f"{member.filename} inflates more than {cap.max_zip_ratio} times its "
                                   f"compressed size, as a zip bomb does ({hint('max_zip_ratio')})")
                out.write(chunk)


def _consumed(source: zipfile.ZipExtFile, member: zipfile.ZipInfo) -> int:
    """Compressed bytes read so far (so a bomb is caught after its first megabyte, not after
    ratio x its whole compressed size); the whole member's if zipfile does not say."""
    left = getattr(source, "_compress_left", None)
    if not isinstance(left, int):
        return member.compress_size
    tail = getattr(getattr(source, "_decompressor", None), "unconsumed_tail", b"")  # read, not yet inflated
    return member.compress_size - left - (len(tail) if isinstance(tail, bytes) else 0)


def _target(folder: Path, name: str) -> Path | None:
    """Where a member goes, inside ``folder`` whatever its name says (as ZipFile.extract does:
    absolute paths and ".." parts are dropped); None for a name with nothing left."""
    parts = [p for p in PurePosixPath(name.replace("\\", "/")).parts if p not in ("", ".", "..", "/")]
    parts = [p for p in parts if not (len(p) == 2 and p[1] == ":")]  # a Windows drive
    if os.sep == "\\":  # characters Windows forbids in names, replaced as ZipFile.extract does
        parts = [zipfile.ZipFile._sanitize_windows_name(p, os.sep) for p in parts]  # type: ignore[attr-defined]
        parts = [p for p in parts if p]
    if not parts:
        return None
    return folder.joinpath(*parts)


def _remember(folder: Path) -> None:
    with _lock:
        if not _unpacked:
            atexit.register(_clean_up)
        _unpacked.append(folder)
    if threading.current_thread() is threading.main_thread():
        remove_on_signals()


def _forget(folder: Path | None) -> None:
    if folder is None:
        return
    shutil.rmtree(folder, ignore_errors=True)
    with _lock:
        if folder in _unpacked:
            _unpacked.remove(folder)


def _clean_up() -> None:
    with _lock:
        folders, _unpacked[:] = list(_unpacked), []
    for folder in folders:
        shutil.rmtree(folder, ignore_errors=True)


_handled: dict[int, object] = {}


def remove_on_signals() -> None:
    """Remove unpacked folders on SIGTERM and SIGHUP too, then end as the signal would have.

    Only from the main thread (Python's rule for signal handlers); a handler someone else set
    is kept and called after the clean-up.
    """
    if threading.current_thread() is not threading.main_thread():
        return
    for name in ("SIGTERM", "SIGHUP"):
        number = getattr(signal, name, None)
        if number is None or number in _handled:
            continue
        try:
            _handled[number] = signal.signal(number, _on_signal)
        except (ValueError, OSError):  # not allowed here (embedded interpreter)
            continue


def _on_signal(number: int, frame: object) -> None:
    _clean_up()
    previous = _handled.get(number)
    if callable(previous):
        previous(number, frame)
        return
    signal.signal(number, signal.SIG_DFL if previous in (None, signal.SIG_DFL) else previous)  # type: ignore[arg-type]
    os.kill(os.getpid(), number)


def remove_stale_folders(root: str | Path | None = None) -> list[Path]:
    """Remove unpacked folders left by radreview processes that no longer run (killed with
    SIGKILL, crashed); returns them."""
    removed = []
    base = Path(root or tempfile.gettempdir())
    try:
        candidates = [p for p in base.iterdir() if p.name.startswith(PREFIX)]
    except OSError:
        return removed
    for folder in candidates:
        match = _NAME.match(folder.name)
        if not match or int(match.group(1)) == os.getpid() or _alive(int(match.group(1))):
            continue
        try:
            if folder.is_dir() and not folder.is_symlink() and folder.stat().st_uid == os.getuid():
                shutil.rmtree(folder, ignore_errors=True)
                removed.append(folder)
        except (OSError, AttributeError):  # AttributeError: no getuid (Windows)
            continue
    return removed


def _alive(pid: int) -> bool:
    if sys.platform == "win32":  # os.kill(pid, 0) would send CTRL_C_EVENT there
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OSError):
        return True  # someone else's process, or we cannot tell: leave its folder alone
    return True

