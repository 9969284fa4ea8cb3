"""DICOMDIR: the files its directory records refer to (missing ones become problems).

A record can name any path; only files inside the DICOMDIR's own folder are opened
(PS3.10 8.5: Referenced File ID components are relative to it). A component that climbs
(``..``), is absolute, holds a path separator or a drive, or a link that leads out of the folder,
makes that record a problem and its file is never read.
"""

from __future__ import annotations

from pathlib import Path

from radreview.studies.dicomio import read_dataset
from radreview.studies.errors import StudyLoadError
from radreview.studies.fileaccess import is_within
from radreview.studies.model import LoadProblem


def dicomdir_files(dicomdir: Path, problems: list[LoadProblem]) -> list[Path]:
    """Paths of the files referenced by a DICOMDIR's records, in record order.

    Referenced File ID (0004,1500) components are relative to the DICOMDIR's folder
    (PS3.10 8.5). Missing files are reported, naming the DICOMDIR and the file.
    """
    try:
        ds = read_dataset(dicomdir, header_only=False)
    except StudyLoadError as exc:
        problems.append(exc.as_problem())
        return []
    records = ds.get("DirectoryRecordSequence")
    if records is None:
        problems.append(LoadProblem(dicomdir, "not a DICOMDIR: it has no Directory Record Sequence"))
        return []
    root = dicomdir.parent
    files: list[Path] = []
    missing = refused = 0
    for record in records:
        file_id = record.get("ReferencedFileID")
        if not file_id:
            continue
        parts = [str(file_id)] if isinstance(file_id, str) else [str(p) for p in file_id]
        unsafe = unsafe_reference(parts)
        if unsafe:
            problems.append(LoadProblem(dicomdir, f"a record refers to {'/'.join(parts)!r}, {unsafe}; not opened"))
            refused += 1
            continue
        path = root.joinpath(*parts)
        if not path.exists():
            # Media written on Windows/CD may differ in case from what the record says.
            path = _case_insensitive(root, parts) or path
        if path.exists() and not is_within(path, root):
            problems.append(LoadProblem(dicomdir, f"a record refers to {'/'.join(parts)!r}, which is a link leading "
                                                  "outside the DICOMDIR's folder; not opened"))
            refused += 1
        elif path.exists():
            files.append(path)
        else:
            missing += 1
            problems.append(LoadProblem(path, f"referenced by {dicomdir} but missing"))
    if not files and not missing and not refused:
        problems.append(LoadProblem(dicomdir, "the DICOMDIR lists no image files"))
    return files


def unsafe_reference(parts: list[str]) -> str | None:
    """Why a Referenced File ID would leave the DICOMDIR's folder, or None if it stays inside."""
    for part in parts:
        stripped = part.strip()
        if not stripped:
            return "which has an empty component"
        if "/" in stripped or "\\" in stripped:
            return "outside the DICOMDIR's folder (a component holds a path separator)"
        if stripped in (".", ".."):
            return "outside the DICOMDIR's folder (a '..' component)" if stripped == ".." else "which has a '.' component"
        if len(stripped) >= 2 and stripped[1] == ":":
            return "outside the DICOMDIR's folder (a drive letter)"
        if "\0" in stripped:
            return "which holds a NUL character"
    return None


def _case_insensitive(root: Path, parts: list[str]) -> Path | None:
    current = root
    for part in parts:
        try:
            match = next((c for c in current.iterdir() if c.name.lower() == part.lower()), None)
        except OSError:
            return None
        if match is None:
            return None
        current = match
    return current
