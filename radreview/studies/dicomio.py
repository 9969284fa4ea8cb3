"""Reading DICOM files with pydicom, turning its many failure modes into one clear reason."""

from __future__ import annotations

import struct
from collections.abc import Sequence
from pathlib import Path

import pydicom
import pydicom.config
from pydicom.dataset import Dataset
from pydicom.errors import InvalidDicomError
from pydicom.uid import UID

from radreview.studies.errors import StudyLoadError

# A viewer reads what it is given: values that break a VR's rules (over-long UIDs, bad dates)
# are kept as they are instead of warning on every file.
pydicom.config.settings.reading_validation_mode = pydicom.config.IGNORE

PREAMBLE_LENGTH = 128
MAGIC = b"DICM"


def has_dicom_magic(head: bytes) -> bool:
    """True if the first 132 bytes are a Part 10 preamble followed by ``DICM``."""
    return len(head) >= PREAMBLE_LENGTH + 4 and head[PREAMBLE_LENGTH : PREAMBLE_LENGTH + 4] == MAGIC


def read_dataset(
    path: Path,
    *,
    header_only: bool,
    specific_tags: Sequence[object] | None = None,
    defer_size: int | None = None,
    last_group: int | None = None,
) -> Dataset:
    """Read a Part 10 file (or a raw dataset without preamble); raise :class:`StudyLoadError`.

    ``header_only`` stops before the pixel data, so indexing never reads pixels.
    ``last_group`` stops reading after that group (elements are stored in tag order): indexing
    needs nothing past group 0028, and skips large private groups and sequences after it.
    """
    try:
        if last_group is not None:
            from pydicom.filereader import read_partial

            boundary = (last_group << 16) | 0xFFFF
            with open(path, "rb") as handle:
                return read_partial(handle, stop_when=lambda tag, vr, length: tag > boundary, defer_size=defer_size)
        return pydicom.dcmread(
            path,
            stop_before_pixels=header_only,
            specific_tags=list(specific_tags) if specific_tags is not None else None,
            defer_size=defer_size,
            force=False,
        )
    except InvalidDicomError:
        # A file without the 128-byte preamble may still be a raw dataset (old ACR-NEMA style
        # exports); accept it only if it parses into something with image attributes.
        try:
            ds = pydicom.dcmread(path, stop_before_pixels=header_only, defer_size=defer_size, force=True)
        except Exception as exc:  # noqa: BLE001 - anything pydicom raises means "not DICOM"
            raise StudyLoadError(path, "not a DICOM file (no DICM marker and not a raw DICOM dataset)") from exc
        if not _looks_like_dicom(ds):
            raise StudyLoadError(path, "not a DICOM file (no DICM marker)") from None
        return ds
    except PermissionError as exc:
        raise StudyLoadError(path, "permission denied") from exc
    except FileNotFoundError as exc:
        raise StudyLoadError(path, "file not found") from exc
    except IsADirectoryError as exc:
        raise StudyLoadError(path, "is a folder, not a file") from exc
    except (EOFError, struct.error) as exc:
        raise StudyLoadError(path, f"file is truncated or damaged ({exc or 'unexpected end of file'})") from exc
    except OSError as exc:
        raise StudyLoadError(path, f"could not be read ({exc.strerror or exc})") from exc
    except Exception as exc:  # noqa: BLE001 - pydicom raises many types for damaged headers
        raise StudyLoadError(path, f"damaged DICOM header ({type(exc).__name__}: {exc})") from exc


def _looks_like_dicom(ds: Dataset) -> bool:
    # force=True parses almost anything; require a few well-formed elements with sane tags.
    try:
        elements = list(ds.keys())
    except Exception:  # noqa: BLE001
        return False
    if len(elements) < 3:
        return False
    known = sum(1 for tag in elements if tag.group in (0x0008, 0x0010, 0x0020, 0x0028))
    return known >= 3 and ("SOPInstanceUID" in ds or "Rows" in ds)


def sop_class_name(uid: str) -> str:
    """A human name for a SOP Class UID ("Basic Text SR Storage"), or the UID itself."""
    if not uid:
        return "unknown SOP class"
    name = UID(uid).name
    return name if name and name != uid else uid


def transfer_syntax_of(ds: Dataset) -> UID:
    meta = getattr(ds, "file_meta", None)
    uid = getattr(meta, "TransferSyntaxUID", None) if meta is not None else None
    if uid is None:
        # A raw dataset: pydicom worked out the encoding while reading it.
        little = getattr(ds, "is_little_endian", True)
        implicit = getattr(ds, "is_implicit_VR", True)
        if implicit:
            return pydicom.uid.ImplicitVRLittleEndian
        return pydicom.uid.ExplicitVRLittleEndian if little else pydicom.uid.ExplicitVRBigEndian
    return UID(str(uid))


def unsupported_transfer_syntax_reason(ts: UID, bits_stored: int = 0) -> str | None:
    """Why pixels in this transfer syntax cannot be decoded here, or None if they can."""
    from pydicom.pixels import get_decoder

    if ts == pydicom.uid.JPEGExtended12Bit and bits_stored > 8:
        # gdcm's and Pillow's pydicom plugins refuse 12-bit JPEG; the one backend that reads it
        # (pylibjpeg-libjpeg) is GPL-licensed, which radreview does not ship.
        return f"unsupported: {bits_stored}-bit JPEG Extended (Process 2 and 4) has no permissively licensed decoder here"

    try:
        decoder = get_decoder(ts)
    except NotImplementedError:
        name = ts.name if ts.name != str(ts) else "unknown"
        return f"unsupported transfer syntax {ts} ({name}): no pixel decoder for it"
    if not decoder.is_available:
        return f"no decoder installed for transfer syntax {ts.name} ({ts}); install pylibjpeg plugins or python-gdcm"
    return None
