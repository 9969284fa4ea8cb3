"""The local cache of retrieved studies: one folder per study, one file per SOP instance.

``<root>/<StudyInstanceUID>/<SOPInstanceUID>.dcm``, root = ``platformdirs.user_cache_dir
("radreview")/pacs`` unless ``RADREVIEW_PACS_CACHE`` or an explicit folder says otherwise.
The cache is only ever added to: a file is written under a temporary name and renamed into
place (a crash leaves no half file under a real name), and an instance already there is kept,
never overwritten. A study whose transfer did not finish carries a small JSON marker
(:data:`INCOMPLETE_MARKER`) until a later retrieval completes it.
"""

from __future__ import annotations

import json
import logging
import os
import re
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import platformdirs
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import PYDICOM_IMPLEMENTATION_UID

from radreview.pacs.errors import short_uid

log = logging.getLogger(__name__)

CACHE_ENV = "RADREVIEW_PACS_CACHE"
INCOMPLETE_MARKER = ".radreview-incomplete.json"
SUFFIX = ".dcm"
# UIDs become file names: only digits and dots (PS3.5 9.1), so a peer cannot name a path.
_UID = re.compile(r"^[0-9]+(\.[0-9]+)*$")
_PIXEL_KEYWORDS = ("PixelData", "FloatPixelData", "DoubleFloatPixelData")
_counter_lock = threading.Lock()
_counter = 0


def cache_root() -> Path:
    override = os.environ.get(CACHE_ENV)
    if override:
        return Path(override)
    return Path(platformdirs.user_cache_dir("radreview", appauthor=False)) / "pacs"


def valid_uid(uid: object) -> bool:
    text = str(uid or "")
    return 0 < len(text) <= 64 and bool(_UID.match(text))


def study_folder(root: Path, study_uid: str) -> Path:
    if not valid_uid(study_uid):
        raise ValueError(f"not a valid Study Instance UID: {study_uid!r}")
    return Path(root) / str(study_uid)


def cached_instances(folder: Path) -> set[str]:
    """SOP Instance UIDs already filed in a study folder."""
    if not folder.is_dir():
        return set()
    return {p.name[: -len(SUFFIX)] for p in folder.iterdir() if p.name.endswith(SUFFIX) and not p.name.startswith(".")}


def is_viewable(ds: Dataset) -> bool:
    """Whether the object holds pixels (an image the viewer can show), unlike an SR or a KOS."""
    return any(keyword in ds for keyword in _PIXEL_KEYWORDS)


@dataclass(frozen=True)
class StoredObject:
    path: Path
    study_uid: str
    sop_instance_uid: str
    sop_class_uid: str
    viewable: bool
    already_cached: bool = False  # the file was there before: kept as it was


def _temporary_name(final: Path) -> Path:
    global _counter
    with _counter_lock:
        _counter += 1
        n = _counter
    return final.with_name(f".{final.name}.{os.getpid()}.{n}.partial")


def _write_atomic(final: Path, write) -> None:
    tmp = _temporary_name(final)
    try:
        write(tmp)
        os.replace(tmp, final)
    finally:
        tmp.unlink(missing_ok=True)


def _target(root: Path, study_uid: str, sop_uid: str) -> Path:
    if not valid_uid(sop_uid):
        raise ValueError(f"received object has no valid SOP Instance UID ({sop_uid!r})")
    return study_folder(root, study_uid) / f"{sop_uid}{SUFFIX}"


def store_dataset(root: Path, ds: Dataset) -> StoredObject:
    """File ``ds`` (with its ``file_meta``) under its study folder, atomically.

    Raises ValueError for a missing or malformed Study/SOP Instance UID. An instance already in
    the cache is kept as it is (``already_cached``)."""
    study_uid, sop_uid = str(ds.get("StudyInstanceUID", "")), str(ds.get("SOPInstanceUID", ""))
    sop_class = str(ds.get("SOPClassUID", ""))
    final = _target(root, study_uid, sop_uid)
    viewable = is_viewable(ds)
    if final.exists():
        return StoredObject(final, study_uid, sop_uid, sop_class, viewable, already_cached=True)
    final.parent.mkdir(parents=True, exist_ok=True)
    meta = ds.file_meta if hasattr(ds, "file_meta") else FileMetaDataset()
    meta.MediaStorageSOPClassUID = sop_class
    meta.MediaStorageSOPInstanceUID = sop_uid
    if "ImplementationClassUID" not in meta:
        meta.ImplementationClassUID = PYDICOM_IMPLEMENTATION_UID
    ds.file_meta = meta
    _write_atomic(final, lambda tmp: ds.save_as(tmp, enforce_file_format=True))
    log.debug("filed %s in study %s", short_uid(sop_uid), short_uid(study_uid))
    return StoredObject(final, study_uid, sop_uid, sop_class, viewable)


def store_encoded(root: Path, encoded: bytes, study_uid: str, sop_uid: str, sop_class: str,
                  viewable: bool) -> StoredObject:
    """File an already encoded DICOM file (preamble, file meta, data set) byte for byte."""
    final = _target(root, study_uid, sop_uid)
    if final.exists():
        return StoredObject(final, study_uid, sop_uid, sop_class, viewable, already_cached=True)
    final.parent.mkdir(parents=True, exist_ok=True)
    _write_atomic(final, lambda tmp: tmp.write_bytes(encoded))
    log.debug("filed %s in study %s", short_uid(sop_uid), short_uid(study_uid))
    return StoredObject(final, study_uid, sop_uid, sop_class, viewable)


def mark_incomplete(folder: Path, expected: int, received: int, source: str) -> None:
    """Say that ``folder`` is not yet the whole study (``source`` names the node, not the patient)."""
    folder.mkdir(parents=True, exist_ok=True)
    marker = folder / INCOMPLETE_MARKER
    text = json.dumps({"study_instance_uid": folder.name, "expected": expected, "received": received,
                       "source": source, "updated": time.strftime("%Y-%m-%dT%H:%M:%S")})
    _write_atomic(marker, lambda tmp: tmp.write_text(text, encoding="utf-8"))


def clear_incomplete(folder: Path) -> None:
    (folder / INCOMPLETE_MARKER).unlink(missing_ok=True)


def incomplete_info(folder: Path) -> dict | None:
    """The marker's content when ``folder`` is marked incomplete, else None."""
    try:
        data = json.loads((folder / INCOMPLETE_MARKER).read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, ValueError):
        return {"study_instance_uid": folder.name}  # unreadable marker: still incomplete
    return data if isinstance(data, dict) else {"study_instance_uid": folder.name}
