"""Zip archives of studies (how studies are often shared): unpacked to a temporary folder.

The folder lives until the process ends (the viewer decodes files on demand, so they must
stay on disk while it runs) and is then removed.
"""

from __future__ import annotations

import atexit
import shutil
import tempfile
import zipfile
from pathlib import Path

from radreview.studies.model import LoadProblem

# Unpacking more than this is refused: a zip bomb, or not something to open in a viewer.
MAX_UNPACKED_BYTES = 8 * 2**30

_unpacked: list[Path] = []


def unpack_zip(archive: Path, problems: list[LoadProblem]) -> Path | None:
    """Unpack ``archive`` into a new temporary folder and return it; None (and a problem) if it cannot."""
    try:
        with zipfile.ZipFile(archive) as handle:
            members = [m for m in handle.infolist() if not m.is_dir()]
            total = sum(m.file_size for m in members)
            if total > MAX_UNPACKED_BYTES:
                problems.append(LoadProblem(archive, f"zip archive too large to open ({total / 2**30:.1f} GiB unpacked)"))
                return None
            folder = Path(tempfile.mkdtemp(prefix="radreview-zip-"))
            _remember(folder)
            for member in members:
                # ZipFile.extract drops absolute paths and ".." parts, so nothing lands outside.
                handle.extract(member, folder)
            return folder
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
    return None


def _remember(folder: Path) -> None:
    if not _unpacked:
        atexit.register(_clean_up)
    _unpacked.append(folder)


def _clean_up() -> None:
    for folder in _unpacked:
        shutil.rmtree(folder, ignore_errors=True)
    _unpacked.clear()
