"""Header attributes for the viewer's header panel (read on demand, never the pixel data).

Names and IDs are returned because the viewer shows them to the reader on the local machine;
callers must not log or export them (see the brief on patient data).
"""

from __future__ import annotations

from pathlib import Path

from pydicom.datadict import keyword_for_tag
from pydicom.dataelem import RawDataElement
from pydicom.dataset import Dataset
from pydicom.multival import MultiValue

from radreview.studies.dicomio import read_dataset, sop_class_name, transfer_syntax_of
from radreview.studies.model import ImageEntry

MAX_VALUE_LENGTH = 256

# Keyword -> label, in the order the summary shows them.
KEY_ATTRIBUTES: tuple[tuple[str, str], ...] = (
    ("PatientName", "Patient name"),
    ("PatientID", "Patient ID"),
    ("PatientBirthDate", "Birth date"),
    ("PatientSex", "Sex"),
    ("StudyDate", "Study date"),
    ("StudyDescription", "Study"),
    ("AccessionNumber", "Accession"),
    ("Modality", "Modality"),
    ("BodyPartExamined", "Body part"),
    ("ViewPosition", "View"),
    ("ImageLaterality", "Laterality"),
    ("SeriesDescription", "Series"),
    ("SeriesNumber", "Series number"),
    ("InstanceNumber", "Instance"),
    ("Manufacturer", "Manufacturer"),
    ("InstitutionName", "Institution"),
)


# Image-level attributes a file may carry only at series level, as the pane caption reads them.
SERIES_FALLBACKS = {"ImageLaterality": "Laterality"}


def header_attributes(entry: ImageEntry) -> list[tuple[str, str, str]]:
    """Every header element as (tag "(gggg,eeee)", keyword, value text), sequences flattened.

    Items of a sequence are indented with ``>`` in the keyword column, as DCMTK's dcmdump does.
    """
    if entry.kind == "raster":
        return _raster_attributes(entry.path)
    ds = read_dataset(entry.path, header_only=True)
    rows: list[tuple[str, str, str]] = []
    meta = getattr(ds, "file_meta", None)
    if meta is not None:
        _walk(meta, rows, depth=0)
    _walk(ds, rows, depth=0)
    return rows


def key_attributes(entry: ImageEntry) -> dict[str, str]:
    """The summary the header panel shows: labelled values, present ones only."""
    if entry.kind == "raster":
        return {
            "File": entry.path.name,
            "Format": entry.raster_format,
            "Size": f"{entry.columns} x {entry.rows}",
            "Frames": str(entry.number_of_frames),
        }
    ds = read_dataset(entry.path, header_only=True)
    out: dict[str, str] = {}
    for keyword, label in KEY_ATTRIBUTES:
        value = ds.get(keyword)
        if value in (None, "") and keyword in SERIES_FALLBACKS:  # e.g. only the series' Laterality
            value = ds.get(SERIES_FALLBACKS[keyword])
        if value not in (None, ""):
            out[label] = _text(value)
    out["Size"] = f"{entry.columns} x {entry.rows}"
    if entry.number_of_frames > 1:
        out["Frames"] = str(entry.number_of_frames)
    out["Photometric"] = entry.photometric
    if entry.bits_stored:
        out["Bits stored"] = str(entry.bits_stored)
    if entry.pixel_spacing:
        out["Pixel spacing"] = f"{entry.pixel_spacing[0]:g} x {entry.pixel_spacing[1]:g} mm ({entry.spacing_source})"
    else:
        out["Pixel spacing"] = "unknown (no measurements in mm)"
    out["SOP class"] = sop_class_name(entry.sop_class_uid)
    out["Transfer syntax"] = transfer_syntax_of(ds).name
    out["File"] = str(entry.path)
    return out


def _walk(ds: Dataset, rows: list[tuple[str, str, str]], depth: int) -> None:
    prefix = ">" * depth
    for key in list(ds.keys()):
        raw = ds.get_item(key)
        if isinstance(raw, RawDataElement) and raw.value is None and raw.length:
            # A long value left in the file (see dicomio.DEFER_BYTES): its size is enough here.
            keyword = keyword_for_tag(key) or ("private" if key.is_private else "unknown")
            rows.append((f"({key.group:04X},{key.element:04X})", prefix + keyword, f"<{raw.length} bytes, not shown>"))
            continue
        element = ds[key]
        tag = f"({element.tag.group:04X},{element.tag.element:04X})"
        keyword = element.keyword or ("private" if element.tag.is_private else "unknown")
        if element.VR == "SQ":
            rows.append((tag, prefix + keyword, f"sequence of {len(element.value)} item(s)"))
            for item in element.value:
                _walk(item, rows, depth + 1)
        elif element.tag == 0x7FE00010:
            continue
        else:
            rows.append((tag, prefix + keyword, _text(element.value, element.VR)))


def _text(value: object, vr: str = "") -> str:
    if isinstance(value, bytes | bytearray):
        return f"<{len(value)} bytes>"
    if vr in ("OB", "OW", "OF", "OD", "OL", "OV", "UN"):
        return f"<{vr} data>"
    # Only real multi-values are joined: PersonName and str are iterable too (by character).
    if isinstance(value, list | tuple | MultiValue):
        text = "\\".join(str(v) for v in value)
    else:
        text = str(value)
    if vr == "UI" or hasattr(value, "name"):
        # A UID with a registered name (transfer syntax, SOP class): show both.
        name = getattr(value, "name", "")
        if name and name != text:
            text = f"{text} ({name})"
    return text if len(text) <= MAX_VALUE_LENGTH else text[: MAX_VALUE_LENGTH - 1] + "…"


def _raster_attributes(path: Path) -> list[tuple[str, str, str]]:

    from radreview.studies.errors import StudyLoadError

    from radreview.studies.fileaccess import open_regular
    from radreview.studies.raster import open_raster

    try:
        with open_regular(path) as handle, open_raster(handle) as image:
            rows = [("", "Format", image.format or ""), ("", "Mode", image.mode), ("", "Size", f"{image.width} x {image.height}")]
            rows += [("", str(key), _text(value)) for key, value in image.info.items() if not isinstance(value, bytes)]
            return rows
    except OSError as exc:
        raise StudyLoadError(path, f"could not read the image header ({exc})") from exc
