"""DICOMDIR: the files its directory records refer to (missing ones become problems)."""

from __future__ import annotations

from pathlib import Path

from radreview.studies.dicomio import read_dataset
from radreview.studies.errors import StudyLoadError
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
    missing = 0
    for record in records:
        file_id = record.get("ReferencedFileID")
        if not file_id:
            continue
        parts = [str(file_id)] if isinstance(file_id, str) else [str(p) for p in file_id]
        path = root.joinpath(*parts)
        if not path.exists():
            # Media written on Windows/CD may differ in case from what the record says.
            path = _case_insensitive(root, parts) or path
        if path.exists():
            files.append(path)
        else:
            missing += 1
            problems.append(LoadProblem(path, f"referenced by {dicomdir} but missing"))
    if not files and not missing:
        problems.append(LoadProblem(dicomdir, "the DICOMDIR lists no image files"))
    return files


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
