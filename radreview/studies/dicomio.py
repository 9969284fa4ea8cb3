"""Reading DICOM files with pydicom, turning its many failure modes into one clear reason.

Everything here reads through :func:`open_dicom`, which
- opens only regular files (:mod:`radreview.studies.fileaccess`);
- probes a file without the ``DICM`` preamble as a raw dataset only if it is small enough
  (``max_raw_dataset_bytes``) and starts like one (a zero-filled file is refused at once);
- inflates a Deflated Explicit VR Little Endian dataset as it is read, never past
  ``max_inflated_bytes`` (pydicom would inflate the whole file in one call);
- stops at the pixel data and records where it is, so that decoding reads one frame, not
  the file, and a header without pixel data is told apart from a truncated file;
- stops at elements that cannot be in a dataset (group 0000 after the meta, values longer
  than the file, endless runs of elements), which is what zero-filled or random files look like.
"""

from __future__ import annotations

import io
import struct
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import pydicom
import pydicom.config
from pydicom.dataset import Dataset, FileDataset
from pydicom.errors import InvalidDicomError
from pydicom.uid import UID

from radreview.limits import hint, limits
from radreview.studies.errors import StudyLoadError
from radreview.studies.fileaccess import file_size, open_regular, os_error_reason

# A viewer reads what it is given: values that break a VR's rules (over-long UIDs, bad dates)
# are kept as they are instead of warning on every file.
pydicom.config.settings.reading_validation_mode = pydicom.config.IGNORE

PREAMBLE_LENGTH = 128
MAGIC = b"DICM"
PIXEL_TAGS = frozenset({0x7FE00010, 0x7FE00008, 0x7FE00009})  # Pixel Data, Float, Double Float
UNDEFINED_LENGTH = 0xFFFFFFFF
# Header values longer than this stay in the file until asked for (pydicom's defer_size).
DEFER_BYTES = 1 << 20
# More top-level elements than any real header has: a file of zeros or noise parses as
# millions of tiny elements, which takes pydicom minutes.
MAX_TOP_LEVEL_ELEMENTS = 100_000
# Values longer than this are checked against the bytes left in the file (short ones cannot
# make a reader wait or allocate much).
LONG_VALUE = 1 << 16
# The first group of a raw dataset (no preamble): file meta (0002) up to image pixel (0028).
_RAW_FIRST_GROUPS = range(0x0002, 0x0029)


class InflateLimitError(StudyLoadError):
    """A deflated dataset inflates to more than the limit allows."""


def has_dicom_magic(head: bytes) -> bool:
    """True if the first 132 bytes are a Part 10 preamble followed by ``DICM``."""
    return len(head) >= PREAMBLE_LENGTH + 4 and head[PREAMBLE_LENGTH : PREAMBLE_LENGTH + 4] == MAGIC


@dataclass(frozen=True)
class PixelDataElement:
    """Where the pixel data element's value starts in the (inflated) stream, and its length."""

    tag: int
    vr: str | None
    offset: int
    length: int

    @property
    def encapsulated(self) -> bool:
        return self.length == UNDEFINED_LENGTH


class InflatingReader(io.RawIOBase):
    """A seekable view of a deflated file: its preamble and meta as stored, then the dataset
    inflated on demand (PS3.5 A.5), never more than ``limit`` bytes of it."""

    def __init__(self, raw: BinaryIO, dataset_start: int, limit: int, path: Path) -> None:
        super().__init__()
        raw.seek(0)
        self._data = bytearray(raw.read(dataset_start))
        self._start = dataset_start
        self._raw = raw
        self._inflater = zlib.decompressobj(-zlib.MAX_WBITS)
        self._pos = 0
        self._done = False
        self._limit = limit
        self._path = path
        self.name = str(path)

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def _inflate_to(self, end: int | None) -> None:
        while not self._done and (end is None or len(self._data) < end):
            data = self._inflater.unconsumed_tail or self._raw.read(1 << 16)
            try:
                if not data:
                    self._data += self._inflater.flush()
                    self._done = True
                    break
                self._data += self._inflater.decompress(data, 1 << 20)
            except zlib.error as exc:
                raise StudyLoadError(self._path, f"damaged deflated dataset: it cannot be inflated ({exc})") from exc
            if self._inflater.eof:
                self._done = True
            if len(self._data) - self._start > self._limit:
                raise InflateLimitError(
                    self._path, f"the deflated dataset inflates to more than {self._limit} bytes "
                                f"({hint('max_inflated_bytes')})")

    def read(self, size: int | None = -1) -> bytes:
        end = None if size is None or size < 0 else self._pos + size
        self._inflate_to(end)
        chunk = bytes(self._data[self._pos : end])
        self._pos += len(chunk)
        return chunk

    def readinto(self, buffer) -> int:  # type: ignore[no-untyped-def, override]
        chunk = self.read(len(buffer))
        buffer[: len(chunk)] = chunk
        return len(chunk)

    def seek(self, offset: int, whence: int = 0) -> int:
        if whence == 2:
            self._inflate_to(None)
            base = len(self._data)
        else:
            base = self._pos if whence == 1 else 0
        self._pos = max(0, base + offset)
        return self._pos

    def tell(self) -> int:
        return self._pos


class _Watch:
    """pydicom's ``stop_when``: finds the pixel data and stops at what no dataset contains."""

    def __init__(self, stream: BinaryIO, size: int | None, boundary: int | None, stop_at_pixels: bool) -> None:
        self.stream = stream
        self.size = size
        self.boundary = boundary
        self.stop_at_pixels = stop_at_pixels
        self.count = 0
        self.pixel: PixelDataElement | None = None
        self.damage: str = ""
        self.last_tag = -1

    def __call__(self, tag: int, vr: str | None, length: int) -> bool:
        # Called for every top-level element: the common path is a few int comparisons (pydicom's
        # BaseTag compares in Python, so it is turned into a plain int first).
        tag = int(tag)
        if tag in PIXEL_TAGS:
            self.pixel = PixelDataElement(tag, vr, self.stream.tell(), int(length))
            if self.stop_at_pixels:
                return True  # the caller checks its length against the file
        elif self.boundary is not None and tag > self.boundary:
            return True
        self.count += 1
        if tag < 0x00010000:
            self.damage = f"an element of group 0000 at byte {self.stream.tell() - 8}: not a DICOM dataset there"
        elif tag == self.last_tag:
            self.damage = f"element {_tag_text(tag)} repeated at byte {self.stream.tell() - 8}"
        elif self.count > MAX_TOP_LEVEL_ELEMENTS:
            self.damage = f"more than {MAX_TOP_LEVEL_ELEMENTS} elements: not a real header"
        elif LONG_VALUE < length != UNDEFINED_LENGTH and self.size is not None:
            left = self.size - self.stream.tell()
            if length > left:
                self.damage = (f"file is truncated: element {_tag_text(tag)} needs {length} bytes, "
                               f"but the file ends {left} bytes later")
        self.last_tag = tag
        return bool(self.damage)


def _tag_text(tag: int) -> str:
    return f"({tag >> 16:04X},{tag & 0xFFFF:04X})"


class DicomFile:
    """An open DICOM file read up to (not including) its pixel data; a context manager.

    ``stream`` reads the file (or, for the deflated syntax, its inflated view) at the offsets
    that ``pixel`` names; ``deflated`` tells which.
    """

    def __init__(self, path: Path, handle: BinaryIO, stream: BinaryIO, dataset: FileDataset,
                 pixel: PixelDataElement | None, size: int | None, deflated: bool) -> None:
        self.path = path
        self.handle = handle
        self.stream = stream
        self.dataset = dataset
        self.pixel = pixel
        self.size = size
        self.deflated = deflated

    @property
    def transfer_syntax(self) -> UID:
        return transfer_syntax_of(self.dataset)

    def close(self) -> None:
        self.handle.close()

    def __enter__(self) -> DicomFile:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def open_dicom(
    path: str | Path,
    *,
    stop_at_pixels: bool = True,
    last_group: int | None = None,
    defer_size: int | None = DEFER_BYTES,
    specific_tags: Sequence[object] | None = None,
) -> DicomFile:
    """Open a Part 10 file (or a raw dataset without preamble) and read its header.

    ``last_group`` stops after that group (elements are stored in tag order: indexing needs
    nothing past 0028). Raises :class:`StudyLoadError` naming the file and the problem.
    """
    path = Path(path)
    handle = open_regular(path)
    try:
        return _open(path, handle, stop_at_pixels, last_group, defer_size, specific_tags)
    except BaseException:
        handle.close()
        raise


def _open(path: Path, handle: BinaryIO, stop_at_pixels: bool, last_group: int | None,
          defer_size: int | None, specific_tags: Sequence[object] | None) -> DicomFile:
    from pydicom.filereader import _read_file_meta_info, read_partial, read_preamble
    from pydicom.filereader import read_dataset as read_elements

    magic = True
    try:
        size = file_size(handle)
        head = handle.read(HEAD_BYTES)
        magic = has_dicom_magic(head)
        if not magic:
            _check_raw_candidate(path, head, size)
        dataset_start, deflated = _meta_from_head(head) if magic else (0, False)
        if dataset_start is None or deflated:  # pydicom reads the meta (and says where it ends)
            handle.seek(0)
            preamble = read_preamble(handle, force=not magic)
            file_meta = _read_file_meta_info(handle)
            dataset_start, deflated = handle.tell(), deflated_syntax(file_meta)
        handle.seek(dataset_start)
        if not deflated and handle.read(8) == bytes(8):
            # pydicom reads group 0000 (a command set) without any stop: a file of zeros would
            # parse as millions of empty (0000,0000) elements.
            raise StudyLoadError(path, f"damaged DICOM header (zero bytes where the dataset should start, "
                                       f"at byte {dataset_start})" if magic else
                                 "not a DICOM file (no DICM marker and not a raw DICOM dataset)")
        stream: BinaryIO = handle
        if deflated:
            stream = InflatingReader(handle, dataset_start, limits().max_inflated_bytes, path)  # type: ignore[assignment]
        boundary = None if last_group is None else (last_group << 16) | 0xFFFF
        watch = _Watch(stream, None if deflated else size, boundary, stop_at_pixels)
        tags = list(specific_tags) if specific_tags is not None else None
        if deflated:
            stream.seek(dataset_start)
            elements = read_elements(stream, False, True, stop_when=watch, specific_tags=tags)
            ds = FileDataset(str(path), elements, preamble, file_meta, False, True)
            ds.set_original_encoding(False, True, elements._character_set)
        else:
            handle.seek(0)
            ds = read_partial(handle, stop_when=watch, defer_size=defer_size, force=not magic, specific_tags=tags)
    except StudyLoadError:
        raise
    except OSError as exc:
        raise StudyLoadError(path, os_error_reason(exc)) from exc
    except MemoryError as exc:
        raise StudyLoadError(path, "damaged DICOM header: not enough memory to read it") from exc
    except Exception as exc:  # noqa: BLE001 - pydicom raises many types for damaged headers
        if not magic or isinstance(exc, InvalidDicomError):  # force=True parses almost anything, or fails oddly
            raise StudyLoadError(path, "not a DICOM file (no DICM marker and not a raw DICOM dataset)") from exc
        raise _header_error(path, exc) from exc
    if watch.damage:
        reason = watch.damage if watch.damage.startswith("file is truncated") else f"damaged DICOM header ({watch.damage})"
        if not magic:
            reason = "not a DICOM file (no DICM marker, and it does not parse as a raw DICOM dataset)"
        raise StudyLoadError(path, reason)
    if not magic and not _looks_like_dicom(ds):
        raise StudyLoadError(path, "not a DICOM file (no DICM marker)")
    return DicomFile(path, handle, stream, ds, watch.pixel, None if deflated else size, deflated)


HEAD_BYTES = 4096
_DEFLATED_UID = pydicom.uid.DeflatedExplicitVRLittleEndian.encode("ascii")


def _meta_from_head(head: bytes) -> tuple[int | None, bool]:
    """(where the dataset starts, whether it is deflated) from the file meta in the first bytes,
    walking its elements without pydicom (the common case needs nothing more); (None, False)
    when the meta has no group length or does not fit in ``head``."""
    if head[132:138] != b"\x02\x00\x00\x00UL" or len(head) < 144:
        return None, False
    start = 144 + struct.unpack_from("<I", head, 140)[0]
    if start > len(head) - 8:  # a long meta (private elements): pydicom reads it
        return None, False
    position, syntax = 144, b""
    while position + 8 <= start:
        group, element, vr = struct.unpack_from("<HH2s", head, position)
        if vr in (b"OB", b"OW", b"OF", b"SQ", b"UT", b"UN"):
            length, value_at = struct.unpack_from("<I", head, position + 8)[0], position + 12
        else:
            length, value_at = struct.unpack_from("<H", head, position + 6)[0], position + 8
        if (group, element) == (0x0002, 0x0010):
            syntax = head[value_at : value_at + length].rstrip(b"\x00 ")
        position = value_at + length
    return start, syntax == _DEFLATED_UID


def deflated_syntax(file_meta: Dataset) -> bool:
    return file_meta.get("TransferSyntaxUID") == pydicom.uid.DeflatedExplicitVRLittleEndian


def _header_error(path: Path, exc: Exception) -> StudyLoadError:
    if isinstance(exc, EOFError | struct.error):
        return StudyLoadError(path, f"file is truncated or damaged ({exc or 'unexpected end of file'})")
    return StudyLoadError(path, f"damaged DICOM header ({type(exc).__name__}: {_short(exc)})")


def _check_raw_candidate(path: Path, head: bytes, size: int) -> None:
    """Refuse, cheaply, a file without preamble that cannot be a raw dataset worth probing."""
    limit = limits().max_raw_dataset_bytes
    if size > limit:
        raise StudyLoadError(path, f"not a DICOM file (no DICM marker); at {size} bytes it is too large to be "
                                   f"probed as a raw DICOM dataset ({hint('max_raw_dataset_bytes')})")
    if len(head) < 8:
        raise StudyLoadError(path, "not a DICOM file (no DICM marker, and too short to be a DICOM dataset)")
    little, big = struct.unpack_from("<H", head)[0], struct.unpack_from(">H", head)[0]
    if little not in _RAW_FIRST_GROUPS and big not in _RAW_FIRST_GROUPS:
        raise StudyLoadError(path, "not a DICOM file (no DICM marker, and it does not start like a DICOM dataset)")


def read_dataset(
    path: Path,
    *,
    header_only: bool,
    specific_tags: Sequence[object] | None = None,
    defer_size: int | None = None,
    last_group: int | None = None,
) -> Dataset:
    """The dataset of a Part 10 file (or raw dataset); raise :class:`StudyLoadError`.

    ``header_only`` stops before the pixel data, so indexing never reads pixels; ``last_group``
    stops after that group. See :func:`open_dicom` for what is refused.
    """
    if defer_size is None and header_only:
        defer_size = DEFER_BYTES
    with open_dicom(path, stop_at_pixels=header_only, last_group=last_group, defer_size=defer_size,
                    specific_tags=specific_tags) as source:
        return source.dataset


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


def _short(exc: BaseException, limit: int = 300) -> str:
    lines = [line.strip() for line in str(exc).strip().splitlines() if line.strip()]
    text = " ".join(lines) if lines else type(exc).__name__
    return text if len(text) <= limit else text[: limit - 1] + "…"
