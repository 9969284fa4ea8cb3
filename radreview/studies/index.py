"""Finding and indexing what a user opened: files, folders (recursive), DICOMDIR, zip, raster images.

Headers only: DICOM files are read with ``stop_before_pixels`` and a fixed list of tags, raster
files with PIL's lazy open. Anything that cannot be opened becomes a :class:`LoadProblem`
(also logged) and never an exception, so one bad file never hides the rest of a folder.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import struct

from pydicom.datadict import dictionary_VR, tag_for_keyword
from pydicom.dataelem import RawDataElement
from pydicom.dataset import Dataset

from radreview.studies.dicomio import (
    has_dicom_magic,
    open_dicom,
    read_dataset,
    sop_class_name,
    transfer_syntax_of,
    unsupported_transfer_syntax_reason,
)
from radreview.studies.errors import StudyLoadError
from radreview.studies.fileaccess import not_regular_reason, open_regular, resolved
from radreview.studies.model import ImageEntry, LoadProblem, Patient, Series, Study, StudyIndex
from radreview.studies.raster import RASTER_SUFFIXES, read_raster_header
from radreview.studies.sizes import check_dicom_size

log = logging.getLogger(__name__)

Progress = Callable[[int, int], None]
Cancel = Callable[[], bool]

# The tags indexing reads.
HEADER_KEYWORDS: tuple[str, ...] = (
    "SpecificCharacterSet", "SOPClassUID", "SOPInstanceUID", "StudyInstanceUID", "SeriesInstanceUID",
    "PatientID", "PatientName", "PatientBirthDate", "PatientSex",
    "StudyDate", "StudyTime", "StudyDescription", "AccessionNumber",
    "SeriesNumber", "SeriesDescription", "Modality", "InstanceNumber",
    "Rows", "Columns", "NumberOfFrames", "SamplesPerPixel", "PhotometricInterpretation",
    "BitsAllocated", "BitsStored", "ViewPosition", "ImageLaterality", "Laterality",
    "BodyPartExamined", "PixelSpacing", "ImagerPixelSpacing",
)
_TAGS: dict[str, int] = {keyword: tag_for_keyword(keyword) for keyword in HEADER_KEYWORDS}  # type: ignore[misc]
DICOM_SUFFIXES = frozenset({".dcm", ".dicom", ".dic", ".ima"})
# Files a folder scan passes over without a word: they are never images.
IGNORED_SUFFIXES = frozenset({
    ".txt", ".md", ".csv", ".json", ".xml", ".html", ".pdf", ".zip", ".gz", ".py", ".ini",
    ".log", ".db", ".sqlite", ".onnx", ".yaml", ".yml", ".toml", ".exe", ".dll", ".so",
})
NATIVE_SYNTAXES = frozenset({
    "1.2.840.10008.1.2", "1.2.840.10008.1.2.1", "1.2.840.10008.1.2.2",
})
NON_IMAGE_SOP_CLASS = "1.2.840.10008.1.3.10"  # Media Storage Directory (a DICOMDIR)


@dataclass(frozen=True)
class _Candidate:
    path: Path
    explicit: bool  # the user named this file (not found by walking a folder)
    root: Path | None = None  # the folder or archive it was found in


def index_paths(
    paths: Sequence[str | Path],
    progress: Progress | None = None,
    cancel: Cancel | None = None,
) -> StudyIndex:
    """Index files, folders (recursively), DICOMDIRs and zip archives into patient ▸ study ▸ series ▸ image.

    ``progress(done, total)`` is called after each file; ``cancel()`` is checked before each
    file, and a cancelled scan returns what it found so far with ``index.cancelled`` set.
    """
    if isinstance(paths, str | Path):  # one path given bare: not a sequence of characters
        paths = [paths]
    problems: list[LoadProblem] = []
    candidates = _collect(paths, problems)
    builder = _IndexBuilder()
    total = len(candidates)
    cancelled = False
    answered: set[Path | None] = set()  # roots where some file was indexed or reported
    for done, candidate in enumerate(candidates, start=1):
        if cancel is not None and cancel():
            cancelled = True
            break
        try:
            if _index_file(candidate, builder):
                answered.add(candidate.root)
        except StudyLoadError as exc:
            problems.append(exc.as_problem())
            answered.add(candidate.root)
        except Exception as exc:  # noqa: BLE001 - one odd file must not stop the scan
            log.debug("unexpected error indexing %s", candidate.path, exc_info=True)
            problems.append(LoadProblem(candidate.path, f"could not be read ({type(exc).__name__}: {exc})"))
            answered.add(candidate.root)
        if progress is not None:
            progress(done, total)
    if not cancelled:
        # Folders whose files were all skipped quietly (none DICOM or image) still get a word.
        for root in dict.fromkeys(c.root for c in candidates if c.root is not None and c.root not in answered):
            problems.append(LoadProblem(root, "no DICOM or image files found here"))
    index = builder.build()
    index.problems.extend(problems)
    index.cancelled = cancelled
    for problem in problems:
        log.warning("could not open %s", problem)
    return index


def _collect(paths: Iterable[str | Path], problems: list[LoadProblem]) -> list[_Candidate]:
    seen: set[Path] = set()
    out: list[_Candidate] = []

    def add(path: Path, explicit: bool, root: Path | None = None) -> None:
        key = resolved(path)  # a symlink loop has no target: its own name is the key
        if key not in seen:
            seen.add(key)
            out.append(_Candidate(path, explicit, root))

    for raw in paths:
        path = Path(raw).expanduser()
        if not path.exists():
            # A name that is there but leads nowhere (a link loop, a dangling link) says why.
            problems.append(LoadProblem(path, not_regular_reason(path) if os.path.lexists(path) else "not found"))
        elif path.is_dir():
            found = [p for p in _walk(path, problems) if _worth_reading(p)]
            if not found:
                problems.append(LoadProblem(path, "no DICOM or image files found in this folder"))
            for p in found:
                add(p, explicit=False, root=path)
        elif path.suffix.lower() == ".zip":
            from radreview.studies.archives import unpack_zip

            folder = unpack_zip(path, problems)
            if folder is not None:
                found = [p for p in _walk(folder, problems) if _worth_reading(p)]
                if not found:
                    problems.append(LoadProblem(path, "no DICOM or image files found in this zip archive"))
                for p in found:
                    add(p, explicit=False, root=path)
        elif path.name.upper() == "DICOMDIR":
            from radreview.studies.dicomdir import dicomdir_files

            for p in dicomdir_files(path, problems):
                add(p, explicit=True)
        else:
            add(path, explicit=True)
    return out


def _walk(folder: Path, problems: list[LoadProblem]) -> list[Path]:
    """Every file under ``folder``, in a stable order; unreadable sub-folders become problems."""
    files: list[Path] = []

    def on_error(error: OSError) -> None:
        where = Path(error.filename) if error.filename else folder
        reason = "permission denied" if isinstance(error, PermissionError) else f"could not be listed ({error.strerror})"
        problems.append(LoadProblem(where, reason))

    for root, dirs, names in os.walk(folder, onerror=on_error):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        files.extend(Path(root) / name for name in sorted(names) if not name.startswith("."))
    return files


def _worth_reading(path: Path) -> bool:
    """Whether a file found in a folder should be read (DICOMDIR itself is not an image)."""
    suffix = path.suffix.lower()
    return path.name.upper() != "DICOMDIR" and suffix not in IGNORED_SUFFIXES


def _index_file(candidate: _Candidate, builder: _IndexBuilder) -> bool:
    """Index one file; False if it was passed over quietly (not DICOM, not an image)."""
    path = candidate.path
    suffix = path.suffix.lower()
    if suffix in RASTER_SUFFIXES:
        _index_raster(path, builder)
        return True
    head = _read_head(path)
    if has_dicom_magic(head) or suffix in DICOM_SUFFIXES or candidate.explicit:
        _index_dicom(path, builder)
        return True
    # An unknown file met while walking a folder: not DICOM, not ours to complain about.
    log.debug("skipping %s: not a DICOM or image file", path)
    return False


def _read_head(path: Path) -> bytes:
    """The first 132 bytes; a FIFO, device or symlink loop is a problem here, never a hang."""
    with open_regular(path) as handle:
        try:
            return handle.read(132)
        except OSError as exc:
            raise StudyLoadError(path, f"could not be read ({exc.strerror or exc})") from exc


def _index_raster(path: Path, builder: _IndexBuilder) -> None:
    header = read_raster_header(path)
    parent = resolved(path.parent)
    where = resolved(path)
    entry = ImageEntry(
        path=path, kind="raster", sop_instance_uid=f"raster:{where}",
        rows=header.height, columns=header.width, number_of_frames=header.frames,
        photometric="RGB" if header.mode in ("RGB", "RGBA", "P", "CMYK", "YCbCr") else "MONOCHROME2",
        bits_stored=16 if header.mode.startswith("I") else 8, raster_format=header.format,
        patient_key=f"folder:{parent}", study_uid=f"raster-study:{where}",
        series_uid=f"raster-series:{where}",
    )
    # A folder of plain images is one synthetic patient; each file its own study and series,
    # because a JPEG is usually one exam and the reader moves on by study.
    builder.add(
        entry,
        patient=Patient(entry.patient_key, name=parent.name or str(parent)),
        study=Study(entry.study_uid, description=path.name),
        series=Series(entry.series_uid, description=header.format, modality=""),
    )


class _FastHeader:
    """Reads the few values indexing needs straight from pydicom's raw elements.

    pydicom converts a value on first access through its hooks (50-100 µs each); for UIDs,
    codes, numbers and dates, and for text in single-byte or UTF-8 character sets, a direct
    decode of the raw bytes is exact and much faster. Other character sets go through pydicom.
    """

    PLAIN_TEXT_VRS = frozenset({"UI", "CS", "DA", "TM", "IS", "DS", "AS", "DT"})
    CHARSET_TEXT_VRS = frozenset({"PN", "LO", "SH", "ST", "LT", "UC"})
    # Single-byte or UTF-8 character sets decode in one call; others (ISO 2022 escapes for
    # Japanese, Korean, Chinese...) go through pydicom's full handling.
    SIMPLE_CHARSETS = {"": "latin-1", "ISO_IR 6": "latin-1", "ISO_IR 100": "latin-1", "ISO_IR 192": "utf-8"}

    def __init__(self, ds: Dataset) -> None:
        self.ds = ds
        self.little = getattr(ds, "is_little_endian", True) is not False
        charset = self._get("SpecificCharacterSet")
        if isinstance(charset, list):  # several: code extensions, pydicom's job
            charset = charset[0] if len(set(charset)) == 1 else "several"
        self.encoding: str | None = self.SIMPLE_CHARSETS.get(str(charset or ""))

    def __contains__(self, keyword: str) -> bool:
        return keyword in self.ds

    def get(self, keyword: str, default: object = None) -> object:
        value = self._get(keyword)
        return default if value is None else value

    def _get(self, keyword: str) -> object:
        tag = _TAGS.get(keyword) or tag_for_keyword(keyword)
        if tag is None:
            return None
        try:
            element = self.ds.get_item(tag)
        except Exception:  # noqa: BLE001 - a damaged element reads as absent
            return None
        if element is None:
            return None
        if not isinstance(element, RawDataElement):
            return element.value
        vr = element.VR or dictionary_VR(tag)
        raw = element.value
        if raw is None or not isinstance(raw, bytes):
            return None
        if vr in ("US", "SS"):
            fmt = ("<" if self.little else ">") + ("H" if vr == "US" else "h")
            count = len(raw) // 2
            values = struct.unpack(fmt[0] + fmt[1] * count, raw[: 2 * count]) if count else ()
            return values[0] if len(values) == 1 else (list(values) or None)
        encoding = getattr(self, "encoding", None)  # unset while __init__ reads the charset
        if vr in self.PLAIN_TEXT_VRS or (vr in self.CHARSET_TEXT_VRS and encoding):
            text = raw.decode("latin-1" if vr in self.PLAIN_TEXT_VRS else encoding, errors="replace").strip(" \x00")  # type: ignore[arg-type]
            if vr == "PN":  # as pydicom's PersonName prints: no empty trailing groups
                text = text.rstrip("=")
            if "\\" in text and vr not in ("ST", "LT"):
                return [part.strip(" \x00") for part in text.split("\\")]
            return text
        return self.ds.get(keyword)  # other character sets: pydicom decodes them


def _index_dicom(path: Path, builder: _IndexBuilder) -> None:
    # Everything indexing needs is in groups 0002-0028; long values are skipped, not read.
    ds = _FastHeader(read_dataset(path, header_only=True, defer_size=1024, last_group=0x0028))
    sop_class = str(ds.get("SOPClassUID", "") or "")
    if sop_class == NON_IMAGE_SOP_CLASS:
        return  # a DICOMDIR under another name: its files are indexed on their own
    rows, columns = _int(ds.get("Rows")), _int(ds.get("Columns"))
    if not rows or not columns:
        raise StudyLoadError(path, f"contains no image: no pixel data ({sop_class_name(sop_class)})")
    ts = transfer_syntax_of(ds.ds)
    reason = unsupported_transfer_syntax_reason(ts, _int(ds.get("BitsStored")) or 0)
    if reason:
        raise StudyLoadError(path, reason)
    frames = _int(ds.get("NumberOfFrames")) or 1
    samples = _int(ds.get("SamplesPerPixel")) or 1
    check_dicom_size(path, rows, columns, frames, samples)
    if str(ts) in NATIVE_SYNTAXES:
        # A cheap truncation check that needs no pixels: the file must at least hold them.
        expected = rows * columns * frames * samples * max(_int(ds.get("BitsAllocated")) or 16, 1) // 8
        size = path.stat().st_size
        if size < expected:
            _raise_short(path, size, expected, sop_class)
    from radreview.studies.pixels import pixel_spacing_of

    spacing, source = pixel_spacing_of(ds)  # type: ignore[arg-type]
    patient_id = str(ds.get("PatientID", "") or "").strip()
    patient_name = str(ds.get("PatientName", "") or "").strip()
    patient_key = patient_id or (f"name:{patient_name}" if patient_name else "(no patient ID)")
    study_uid = str(ds.get("StudyInstanceUID", "") or "") or f"no-study:{resolved(path.parent)}"
    series_uid = str(ds.get("SeriesInstanceUID", "") or "") or f"no-series:{resolved(path.parent)}"
    modality = str(ds.get("Modality", "") or "")
    entry = ImageEntry(
        path=path, kind="dicom",
        sop_instance_uid=str(ds.get("SOPInstanceUID", "") or "") or f"file:{resolved(path)}",
        rows=rows, columns=columns, number_of_frames=frames,
        instance_number=_int(ds.get("InstanceNumber")),
        modality=modality,
        photometric=str(ds.get("PhotometricInterpretation", "") or "").strip(),
        view_position=str(ds.get("ViewPosition", "") or ""),
        laterality=str(ds.get("ImageLaterality", "") or ds.get("Laterality", "") or ""),
        body_part=str(ds.get("BodyPartExamined", "") or ""),
        patient_key=patient_key, study_uid=study_uid, series_uid=series_uid,
        sop_class_uid=sop_class, transfer_syntax_uid=str(ts),
        bits_stored=_int(ds.get("BitsStored")) or 0, samples_per_pixel=samples,
        pixel_spacing=spacing, spacing_source=source,
    )
    builder.add(
        entry,
        patient=Patient(
            patient_key, name=patient_name.replace("^", " ").strip(),
            birth_date=str(ds.get("PatientBirthDate", "") or ""), sex=str(ds.get("PatientSex", "") or ""),
        ),
        study=Study(
            study_uid, date=str(ds.get("StudyDate", "") or ""), description=str(ds.get("StudyDescription", "") or ""),
            accession_number=str(ds.get("AccessionNumber", "") or ""),
        ),
        series=Series(
            series_uid, number=_int(ds.get("SeriesNumber")), description=str(ds.get("SeriesDescription", "") or ""),
            modality=modality,
        ),
    )


def _raise_short(path: Path, size: int, expected: int, sop_class: str) -> None:
    """A file too short for its pixels: cut off, or a header without pixel data (which is not
    "truncated": the rest of the header tells, and only this rare case reads it)."""
    with open_dicom(path) as dicom:
        if dicom.pixel is None:
            raise StudyLoadError(path, f"contains no image: no pixel data ({sop_class_name(sop_class)})")
    raise StudyLoadError(path, f"file is truncated: {size} bytes, but its pixel data alone needs {expected}")


class _IndexBuilder:
    """Places entries under their patient/study/series, first header wins for shared fields."""

    def __init__(self) -> None:
        self.patients: dict[str, Patient] = {}
        self.studies: dict[tuple[str, str], Study] = {}
        self.series: dict[tuple[str, str, str], Series] = {}
        self.instances: set[tuple[str, str]] = set()

    def add(self, entry: ImageEntry, patient: Patient, study: Study, series: Series) -> None:
        known_patient = self.patients.setdefault(patient.key, patient)
        study_key = (patient.key, study.uid)
        if study_key not in self.studies:
            self.studies[study_key] = study
            known_patient.studies.append(study)
        series_key = (*study_key, series.uid)
        if series_key not in self.series:
            self.series[series_key] = series
            self.studies[study_key].series.append(series)
        instance_key = (series.uid, entry.sop_instance_uid)
        if instance_key in self.instances:
            log.info("%s: same SOP Instance UID as a file already indexed; showing it once", entry.path)
            return
        self.instances.add(instance_key)
        self.series[series_key].images.append(entry)

    def build(self) -> StudyIndex:
        patients = sorted(self.patients.values(), key=lambda p: (p.name.lower(), p.key))
        for patient in patients:
            patient.studies.sort(key=lambda s: (s.date, s.description.lower(), s.uid))
            for study in patient.studies:
                study.series.sort(key=lambda s: (s.number is None, s.number or 0, s.description.lower(), s.uid))
                for series in study.series:
                    series.images.sort(key=lambda i: (i.instance_number is None, i.instance_number or 0, str(i.path)))
        return StudyIndex(patients=patients)


def _int(value: object) -> int | None:
    try:
        return int(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None
