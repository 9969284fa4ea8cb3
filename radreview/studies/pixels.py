"""Decoding one image (one frame) on demand: stored values ▸ Modality LUT, plus its VOI presets.

Grey images keep a compact form next to ``pixels``: ``stored_index`` (uint16/uint32 offsets
from the smallest stored value) and ``value_table`` (the Modality LUT output for each offset).
:func:`radreview.studies.display.render_display` then windows the table, not the image, which is
what makes interactive window/level fast on 1760x1760 radiographs.
"""

from __future__ import annotations

import logging
import struct
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from pydicom.dataset import Dataset

import pydicom.uid
from pydicom.uid import UID

from radreview.studies import codestream
from radreview.studies.dicomio import (
    DicomFile,
    open_dicom,
    sop_class_name,
    transfer_syntax_of,
    unsupported_transfer_syntax_reason,
)
from radreview.studies.errors import StudyLoadError
from radreview.studies.model import ImageEntry
from radreview.studies.sizes import check_dicom_size
from radreview.studies.voi import VOI_FUNCTIONS, VoiLutTable, Window, window_from_range

log = logging.getLogger(__name__)
# pydicom logs every decoder that fails, with a traceback, at ERROR. Plug-ins are tried one by
# one here and a file none can decode is reported with its name and the reason (and each failure
# is in radreview's debug log), so those records would only repeat it, less clearly.
logging.getLogger("pydicom.pixels.decoders.base").setLevel(logging.CRITICAL)

# Offsets wider than this (e.g. float data, 32-bit integers with a huge range) skip the table.
MAX_TABLE_SIZE = 1 << 20


@dataclass(eq=False)
class DecodedImage:
    """One decoded frame, ready for :func:`render_display`.

    ``pixels``: float32 [H, W] after the Modality LUT (rescale slope/intercept or Modality LUT
    Sequence), or uint8 [H, W, 3] RGB for colour images.
    """

    pixels: np.ndarray
    photometric: str
    windows: tuple[Window, ...]
    presentation_lut_shape: str = ""  # "IDENTITY", "INVERSE" or "" when absent
    pixel_spacing: tuple[float, float] | None = None  # mm between rows, between columns
    spacing_source: str | None = None  # "Pixel Spacing" / "Imager Pixel Spacing"
    frame: int = 0
    number_of_frames: int = 1
    bits_stored: int = 8
    path: Path = field(default_factory=Path)
    value_range: tuple[float, float] = (0.0, 255.0)  # min/max of ``pixels``
    modality_lut: str = "none"  # "rescale", "Modality LUT Sequence" or "none"
    rescale_slope: float = 1.0
    rescale_intercept: float = 0.0
    rescale_type: str = ""  # e.g. "HU", "US", "PVAL"
    # The compact grey form (see module docstring); None for colour or float data.
    stored_index: np.ndarray | None = field(default=None, repr=False)
    value_table: np.ndarray | None = field(default=None, repr=False)

    @property
    def is_color(self) -> bool:
        return self.pixels.ndim == 3

    @property
    def shape(self) -> tuple[int, int]:
        return int(self.pixels.shape[0]), int(self.pixels.shape[1])

    @property
    def inverted_by_file(self) -> bool:
        """True if the file asks for inversion: MONOCHROME1, or Presentation LUT Shape INVERSE.

        For MONOCHROME1, INVERSE is how the DX/CR IODs state the same inversion again
        (PS3.3 C.8.11.6.1.2), so the two are not applied twice.
        """
        return self.photometric == "MONOCHROME1" or self.presentation_lut_shape == "INVERSE"

    @property
    def default_window(self) -> Window:
        return self.windows[0]

    def value_at(self, row: int, column: int) -> float | tuple[int, int, int] | None:
        """The Modality LUT output (or RGB) at a pixel, for the status bar; None outside."""
        if not (0 <= row < self.pixels.shape[0] and 0 <= column < self.pixels.shape[1]):
            return None
        value = self.pixels[row, column]
        if self.is_color:
            return tuple(int(v) for v in value)  # type: ignore[return-value]
        return float(value)

    @property
    def nbytes(self) -> int:
        """Memory held by the decoded arrays, for a viewer's LRU cache."""
        total = self.pixels.nbytes
        for array in (self.stored_index, self.value_table):
            if array is not None:
                total += array.nbytes
        return total


def decode_image(entry: ImageEntry, frame: int = 0) -> DecodedImage:
    """Decode one frame of an indexed file; raises :class:`StudyLoadError` if it cannot."""
    if entry.kind == "raster":
        from radreview.studies.raster import decode_raster

        return _reported(entry.path, decode_raster, entry.path, frame)
    return _reported(entry.path, decode_dicom, entry.path, frame)


def decode_display_levels(entry: ImageEntry, frame: int = 0) -> np.ndarray:
    """``render_display(decode_image(entry, frame))``, the first displayed pixels, by the shortest
    path (DICOM: :func:`dicom_display_levels`); raises :class:`StudyLoadError` if it cannot."""
    if entry.kind == "raster":
        from radreview.studies.display import render_display

        return render_display(decode_image(entry, frame))
    return _reported(entry.path, dicom_display_levels, entry.path, frame)


def _reported(path: Path, decode, *args):  # type: ignore[no-untyped-def]
    """``decode(*args)``, any failure turned into a :class:`StudyLoadError` naming ``path``."""
    try:
        return decode(*args)
    except StudyLoadError:
        raise
    except MemoryError as exc:
        raise StudyLoadError(path, "not enough memory to decode this image") from exc
    except Exception as exc:  # noqa: BLE001 - callers (the viewer) expect StudyLoadError only
        log.debug("unexpected error decoding %s", path, exc_info=True)
        raise StudyLoadError(path, f"could not be decoded ({type(exc).__name__}: {_short(exc)})") from exc


def decode_dicom(path: Path, frame: int = 0) -> DecodedImage:
    """Decode frame ``frame`` of a DICOM file (any transfer syntax pydicom's backends decode).

    Only the header and that one frame are read; sizes are checked against the limits first,
    for compressed frames against the codestream's own header too.
    """
    ds, stored, photometric, common = _read_dicom_frame(Path(path), frame)
    return _decoded(Path(path), ds, stored, photometric, common)


def dicom_display_levels(path: Path, frame: int = 0) -> np.ndarray:
    """uint8 [H, W] (or [H, W, 3]) of a DICOM frame as first displayed: exactly
    ``render_display(decode_dicom(path, frame))``, without the float copy of every pixel (and the
    index arrays) that the viewer keeps for window/level. For batch prediction, which needs only
    the displayed pixels: a grey radiograph's stored values go through one lookup table (Modality
    LUT ▸ default VOI ▸ MONOCHROME1), built over the stored values' range as the viewer builds it."""
    from radreview.studies.display import render_display, to_display_levels
    from radreview.studies.voi import apply_window

    path = Path(path)
    ds, stored, photometric, common = _read_dicom_frame(path, frame)
    tables = _grey_tables(ds, stored) if _is_grey(stored, photometric) else None
    if tables is None:
        return render_display(_decoded(path, ds, stored, photometric, common))
    table, low = tables
    windows = file_windows(ds, path) or (window_from_range(*_value_range(table, stored, low), "Data range"),)
    lut = to_display_levels(apply_window(table, windows[0]))
    presentation = str(common["presentation_lut_shape"])
    if (photometric or "MONOCHROME2") == "MONOCHROME1" or presentation == "INVERSE":
        lut = 255 - lut
    if stored.dtype.kind == "u" and low + len(lut) <= MAX_TABLE_SIZE:
        # index the table by the stored value itself: no array of offsets (the entries below
        # ``low`` are never looked up; bounded, for 32-bit data far from zero)
        return np.take(np.concatenate([np.zeros(low, np.uint8), lut]), stored)
    return np.take(lut, _offsets(stored, low, np.uint16 if len(table) <= 65536 else np.uint32))


def _value_range(table: np.ndarray, stored: np.ndarray, low: int) -> tuple[float, float]:
    """Min and max of the Modality LUT output over the stored values present, as float32 (what
    ``DecodedImage.value_range`` holds): the table's ends when it is monotonic (the stored
    minimum and maximum are both present), else over the values that occur."""
    steps = np.diff(table)
    if steps.size == 0 or (steps >= 0).all() or (steps <= 0).all():
        values = table[[0, -1]]
    else:
        present = np.zeros(len(table), bool)
        present[_offsets(stored, low, np.uint32)] = True
        values = table[present]
    values = values.astype(np.float32)
    return float(values.min()), float(values.max())


def _read_dicom_frame(path: Path, frame: int) -> tuple[Dataset, np.ndarray, str, dict]:
    """The header, frame ``frame``'s stored values, the photometric interpretation and the
    attributes every decoded image carries; raises :class:`StudyLoadError` with the reason."""
    with open_dicom(path) as dicom:
        ds = dicom.dataset
        if dicom.pixel is None:
            name = sop_class_name(str(ds.get("SOPClassUID", "")))
            raise StudyLoadError(path, f"contains no image: no pixel data ({name})")
        ts = transfer_syntax_of(ds)
        reason = unsupported_transfer_syntax_reason(ts, _int(ds.get("BitsStored"), 0))
        if reason:
            raise StudyLoadError(path, reason)
        n_frames = _int(ds.get("NumberOfFrames"), 1) or 1
        rows, columns = _int(ds.get("Rows"), 0), _int(ds.get("Columns"), 0)
        check_dicom_size(path, rows, columns, n_frames, _int(ds.get("SamplesPerPixel"), 1))
        if not 0 <= frame < n_frames:
            raise StudyLoadError(path, f"frame {frame} does not exist (the file has {n_frames})")
        if "TransferSyntaxUID" not in getattr(ds, "file_meta", {}):
            # Files without (0002,0010) (raw datasets, some old exports): tell the decoder what
            # encoding pydicom found while reading.
            from pydicom.dataset import FileMetaDataset

            ds.file_meta = getattr(ds, "file_meta", None) or FileMetaDataset()
            ds.file_meta.TransferSyntaxUID = ts
        stored = _read_frame(dicom, frame, n_frames, ts)
    photometric = str(ds.get("PhotometricInterpretation", "")).strip().upper()
    _apply_functional_groups(ds, frame)
    spacing, source = pixel_spacing_of(ds)
    common = dict(
        presentation_lut_shape=str(ds.get("PresentationLUTShape", "")).strip().upper(),
        pixel_spacing=spacing,
        spacing_source=source,
        frame=frame,
        number_of_frames=n_frames,
        bits_stored=_int(ds.get("BitsStored"), 8),
        path=path,
    )
    return ds, stored, photometric, common


def _is_grey(stored: np.ndarray, photometric: str) -> bool:
    return photometric in ("MONOCHROME1", "MONOCHROME2") or (stored.ndim == 2 and photometric != "PALETTE COLOR")


def _decoded(path: Path, ds: Dataset, stored: np.ndarray, photometric: str, common: dict) -> DecodedImage:
    if _is_grey(stored, photometric):
        if stored.ndim != 2:
            raise StudyLoadError(path, f"unexpected pixel array shape {stored.shape} for {photometric}")
        return _grey_image(path, ds, stored, photometric or "MONOCHROME2", common)
    if photometric == "PALETTE COLOR":
        from pydicom.pixels import apply_color_lut

        try:
            stored = apply_color_lut(stored, ds)
        except Exception as exc:  # noqa: BLE001
            raise StudyLoadError(path, f"could not apply the palette colour lookup table: {_short(exc)}") from exc
        common["bits_stored"] = 16 if stored.dtype.itemsize > 1 else 8
    # pydicom converts YBR_* to RGB by default, so everything colour here is RGB.
    rgb = to_rgb8(stored, int(common["bits_stored"]))
    return DecodedImage(
        pixels=rgb, photometric="RGB", windows=(window_from_range(0, 255, "Full range"),),
        value_range=(0.0, 255.0), **common,  # type: ignore[arg-type]
    )


# Decoder plug-ins tried in this process, in order. Each reports damaged data as an exception
# (fuzzed with mutated and truncated frames of pydicom's test files: no crash). Measured
# (tests/benchmarks): pylibjpeg-rle is about 8x faster than pydicom's own numpy RLE decoder.
IN_PROCESS_PLUGINS: dict[str, tuple[str, ...]] = {
    **dict.fromkeys(codestream.JPEG_SYNTAXES, ("pillow",)),
    **dict.fromkeys(codestream.J2K_SYNTAXES, ("pylibjpeg", "pillow")),
    codestream.RLE_SYNTAX: ("pylibjpeg", "pydicom"),
}
# gdcm aborts the process on damaged JPEG, JPEG-LS and JPEG 2000 data (an uncaught C++
# exception): it runs only in a child process (radreview.studies.isolated), for the syntaxes no
# other permissive decoder reads (JPEG Lossless, JPEG-LS) and as the last resort for the others.
ISOLATED_PLUGIN = "gdcm"
# The pixel module attributes a decoder needs (PS3.3 C.7.6.3), copied into a one-frame dataset.
PIXEL_MODULE = (
    "SamplesPerPixel", "PhotometricInterpretation", "PlanarConfiguration", "Rows", "Columns",
    "BitsAllocated", "BitsStored", "HighBit", "PixelRepresentation",
)


# Enhanced multi-frame objects keep rescale, window and spacing in functional group macros.
FUNCTIONAL_GROUP_MACROS = ("PixelValueTransformationSequence", "FrameVOILUTSequence", "PixelMeasuresSequence")


def _apply_functional_groups(ds: Dataset, frame: int) -> None:
    """Copy the frame's Pixel Value Transformation, Frame VOI LUT and Pixel Measures to the top
    level (per-frame items override shared ones, PS3.3 C.7.6.16), where the pipeline reads them."""
    shared = ds.get("SharedFunctionalGroupsSequence") or []
    per_frame = ds.get("PerFrameFunctionalGroupsSequence") or []
    groups = [shared[0] if shared else None, per_frame[frame] if frame < len(per_frame) else None]
    for group in groups:
        if group is None:
            continue
        for macro in FUNCTIONAL_GROUP_MACROS:
            items = group.get(macro)
            if items:
                for element in items[0]:
                    ds[element.tag] = element


def _read_frame(source: DicomFile, frame: int, n_frames: int, ts: UID) -> np.ndarray:
    """One frame's stored values, read from the file (never the whole pixel data)."""
    from pydicom.pixels import pixel_array

    path, pixel = source.path, source.pixel
    assert pixel is not None
    if not pixel.encapsulated:
        if ts.is_compressed:
            raise StudyLoadError(path, f"damaged pixel data: {ts.name} data must be encapsulated")
        if source.size is not None and pixel.offset + pixel.length > source.size:
            raise StudyLoadError(path, f"file is truncated: its pixel data needs {pixel.length} bytes, "
                                       f"but the file ends {source.size - pixel.offset} bytes after it starts")
        source.stream.seek(0)
        # The deflated view holds the dataset inflated: native Explicit VR Little Endian.
        syntax = pydicom.uid.ExplicitVRLittleEndian if source.deflated else ts
        try:
            return pixel_array(source.stream, index=frame, transfer_syntax_uid=syntax)
        except StudyLoadError:
            raise
        except Exception as exc:  # noqa: BLE001 - numpy/pydicom errors for inconsistent headers
            raise StudyLoadError(path, f"could not decode the pixel data ({ts.name}): {_short(exc)}") from exc
    data = _compressed_frame(source, frame, n_frames)
    ds = source.dataset
    rows, columns = _int(ds.get("Rows"), 0), _int(ds.get("Columns"), 0)
    _check_frame_header(path, ts, data, rows, columns)
    return decode_compressed(path, single_frame_dataset(ds, data, ts), ts)


def _compressed_frame(source: DicomFile, frame: int, n_frames: int) -> bytes:
    """The bytes of one encapsulated frame, read with a budget (a frame is never much larger
    compressed than decoded, so a file cannot make this read gigabytes)."""
    from pydicom.encaps import get_frame

    ds, path, pixel = source.dataset, source.path, source.pixel
    assert pixel is not None
    per_frame = (_int(ds.get("Rows"), 0) * _int(ds.get("Columns"), 0) * (_int(ds.get("SamplesPerPixel"), 1) or 1)
                 * max(1, (_int(ds.get("BitsAllocated"), 8) + 7) // 8))
    budget = _BudgetReader(source.stream, (frame + 1) * (per_frame + per_frame // 4 + (1 << 20)))
    offsets = None
    if "ExtendedOffsetTable" in ds and "ExtendedOffsetTableLengths" in ds:
        offsets = (ds.ExtendedOffsetTable, ds.ExtendedOffsetTableLengths)
    if source.size is not None:
        _check_items_complete(source.stream, pixel.offset, source.size, path)
    source.stream.seek(pixel.offset)
    try:
        return get_frame(budget, frame, extended_offsets=offsets, number_of_frames=n_frames)
    except _BudgetExceeded as exc:
        raise StudyLoadError(path, f"damaged pixel data: frame {frame} holds more compressed data than "
                                   f"its {per_frame} decoded bytes can need") from exc
    except StudyLoadError:
        raise
    except Exception as exc:  # noqa: BLE001 - ValueError/EOFError from pydicom's item parser
        truncated = source.size is not None and source.stream.tell() >= source.size
        what = "file is truncated or damaged" if truncated else "damaged pixel data"
        raise StudyLoadError(path, f"{what}: frame {frame} could not be read from the encapsulated pixel data "
                                   f"({_short(exc)})") from exc


def _check_items_complete(stream, offset: int, size: int, path: Path) -> None:  # type: ignore[no-untyped-def]
    """Walk the item headers of encapsulated pixel data (PS3.5 A.4), seeking over their values:
    a file cut short ends before the Sequence Delimitation Item, and says so here."""
    position = offset
    while position + 8 <= size:
        stream.seek(position)
        group, element, length = struct.unpack("<HHI", stream.read(8))
        if (group, element) == (0xFFFE, 0xE0DD):
            return
        if (group, element) != (0xFFFE, 0xE000) or length == 0xFFFFFFFF:
            raise StudyLoadError(path, f"damaged pixel data: no item tag at byte {position} of the encapsulated pixel data")
        position += 8 + length
    raise StudyLoadError(path, "file is truncated: the encapsulated pixel data ends before its last item "
                               f"(the file has {size} bytes)")


class _BudgetExceeded(Exception):
    pass


class _BudgetReader:
    """A file-like that refuses to read more than ``budget`` bytes in all."""

    def __init__(self, stream, budget: int) -> None:  # type: ignore[no-untyped-def]
        self._stream = stream
        self._left = budget

    def read(self, size: int = -1) -> bytes:
        if size is None or size < 0 or size > self._left:
            raise _BudgetExceeded()
        data = self._stream.read(size)
        self._left -= len(data)
        return data

    def seek(self, offset: int, whence: int = 0) -> int:
        return self._stream.seek(offset, whence)

    def tell(self) -> int:
        return self._stream.tell()


def _check_frame_header(path: Path, ts: UID, data: bytes, rows: int, columns: int) -> None:
    """Refuse a compressed frame whose own header asks for more than the limits, or disagrees
    with the DICOM header (decoders allocate what the codestream says)."""
    try:
        header = codestream.frame_header(str(ts), data)
    except codestream.CodestreamError as exc:
        raise StudyLoadError(path, f"damaged pixel data: {exc}") from exc
    if header is None:
        return
    check_dicom_size(path, header.rows or rows, header.columns, 1, header.components,
                     what=f"the {header.codec} frame header")
    if (header.rows or rows, header.columns) != (rows, columns):
        raise StudyLoadError(path, f"damaged pixel data: the {header.codec} frame is {header.columns} x "
                                   f"{header.rows or rows} pixels but the DICOM header says {columns} x {rows}")


def single_frame_dataset(ds: Dataset, frame: bytes, ts: UID) -> Dataset:
    """A dataset holding only the pixel module and one encapsulated frame: what a decoder needs
    (and all that is sent to a child process)."""
    from pydicom.dataset import FileMetaDataset
    from pydicom.encaps import encapsulate

    one = Dataset()
    for keyword in PIXEL_MODULE:
        if keyword in ds:
            setattr(one, keyword, ds[keyword].value)
    one.NumberOfFrames = 1
    one.PixelData = encapsulate([frame])
    one["PixelData"].VR = "OB"
    one.file_meta = FileMetaDataset()
    one.file_meta.TransferSyntaxUID = ts
    return one


def decode_compressed(path: Path, one: Dataset, ts: UID) -> np.ndarray:
    """Decode a one-frame dataset: in-process plug-ins first, then gdcm in a child process."""
    from pydicom.pixels import get_decoder, pixel_array

    available = get_decoder(ts).available_plugins
    failures: list[str] = []
    for plugin in IN_PROCESS_PLUGINS.get(str(ts), ()):
        if plugin not in available:
            continue
        try:
            return pixel_array(one, index=0, decoding_plugin=plugin)
        except (KeyboardInterrupt, SystemExit):
            raise
        except BaseException as exc:  # noqa: BLE001 - Rust plug-ins panic with a BaseException
            log.debug("%s: %s could not decode it", path, plugin, exc_info=True)
            failures.append(_short(exc).replace("Unable to decode as exceptions were raised by all available plugins: ", ""))
    if ISOLATED_PLUGIN in available:
        from radreview.studies import isolated

        try:
            return isolated.decode_frame(one, ISOLATED_PLUGIN)
        except isolated.DecoderCrashed as exc:
            earlier = f"{failures[0]}; then " if failures else ""
            raise StudyLoadError(path, f"could not decode the pixel data ({ts.name}): {earlier}{exc}") from exc
        except isolated.DecoderError as exc:
            failures.append(_short(exc))
    if not failures:
        raise StudyLoadError(path, f"no decoder installed for transfer syntax {ts.name} ({ts})")
    raise StudyLoadError(path, f"could not decode the pixel data ({ts.name}): {failures[0]}")


def to_rgb8(array: np.ndarray, bits_stored: int) -> np.ndarray:
    """Colour data of any depth to uint8 [H, W, 3]."""
    if array.ndim != 3 or array.shape[-1] not in (3, 4):
        raise ValueError(f"not a colour image: shape {array.shape}")
    array = array[..., :3]
    if array.dtype == np.uint8:
        return np.ascontiguousarray(array)
    if np.issubdtype(array.dtype, np.floating):
        top = float(array.max()) or 1.0
        return np.clip(array / top * 255.0 + 0.5, 0, 255).astype(np.uint8)
    bits = bits_stored if 8 < bits_stored <= array.dtype.itemsize * 8 else array.dtype.itemsize * 8
    return (array.astype(np.uint64) >> (bits - 8)).clip(0, 255).astype(np.uint8)


def _grey_image(path: Path, ds: Dataset, stored: np.ndarray, photometric: str, common: dict) -> DecodedImage:
    from pydicom.pixels import apply_modality_lut

    index = table = None
    tables = _grey_tables(ds, stored)
    if tables is not None:
        table, low = tables
        index_dtype = np.uint16 if len(table) <= 65536 else np.uint32
        index = _offsets(stored, low, index_dtype)
        pixels = table.astype(np.float32)[index]
    if table is None:
        pixels = apply_modality_lut(stored, ds).astype(np.float32)
    if "ModalityLUTSequence" in ds:
        modality = "Modality LUT Sequence"
    elif "RescaleSlope" in ds or "RescaleIntercept" in ds:
        modality = "rescale"
    else:
        modality = "none"
    low_value, high_value = (float(pixels.min()), float(pixels.max())) if pixels.size else (0.0, 1.0)
    windows = file_windows(ds, path) or (window_from_range(low_value, high_value, "Data range"),)
    return DecodedImage(
        pixels=pixels, photometric=photometric, windows=windows, value_range=(low_value, high_value),
        modality_lut=modality, rescale_slope=_float(ds.get("RescaleSlope"), 1.0),
        rescale_intercept=_float(ds.get("RescaleIntercept"), 0.0),
        rescale_type=str(ds.get("RescaleType", "") or ""),
        stored_index=index, value_table=table, **common,
    )


def _grey_tables(ds: Dataset, stored: np.ndarray) -> tuple[np.ndarray, int] | None:
    """The Modality LUT output (float64) for every stored value from the smallest present to the
    largest, and that smallest value; None for float data, or a range too wide for a table."""
    from pydicom.pixels import apply_modality_lut

    if stored.ndim != 2 or not np.issubdtype(stored.dtype, np.integer) or not stored.size:
        return None
    low, high = int(stored.min()), int(stored.max())
    if high - low >= MAX_TABLE_SIZE:
        return None
    return apply_modality_lut(np.arange(low, high + 1, dtype=np.int64), ds).astype(np.float64), low


def _offsets(stored: np.ndarray, low: int, dtype: type) -> np.ndarray:
    """``stored - low`` as unsigned offsets, without a full-size int64 temporary when possible."""
    if stored.dtype.kind == "u" and np.dtype(dtype).itemsize >= stored.dtype.itemsize:
        return np.subtract(stored, low, dtype=dtype) if low else stored.astype(dtype)
    return (stored.astype(np.int64) - low).astype(dtype)


def file_windows(ds: Dataset, path: Path | str = "") -> tuple[Window, ...]:
    """The file's VOI presets: every Window Center/Width pair, then every VOI LUT Sequence item.

    Window Center/Width come first because that is what DICOM viewers (and DCMTK's ``+Wi 1``)
    take as the default; invalid presets (width below the function's minimum) are skipped.
    """
    windows: list[Window] = []
    centers, widths = _multi(ds.get("WindowCenter")), _multi(ds.get("WindowWidth"))
    names = [str(n) for n in _multi(ds.get("WindowCenterWidthExplanation"), keep_text=True)]
    function = str(ds.get("VOILUTFunction", "LINEAR") or "LINEAR").strip().upper()
    if function not in VOI_FUNCTIONS:
        log.info("%s: unknown VOI LUT Function %r, using LINEAR", path, function)
        function = "LINEAR"
    for i, (center, width) in enumerate(zip(centers, widths)):
        if center is None or width is None or width <= 0 or (function == "LINEAR" and width < 1):
            log.info("%s: skipping invalid window preset %s/%s", path, center, width)
            continue
        windows.append(Window(center, width, function, names[i] if i < len(names) else ""))  # type: ignore[arg-type]
    for i, item in enumerate(ds.get("VOILUTSequence", []) or []):
        table = _voi_lut_table(item, signed=_int(ds.get("PixelRepresentation"), 0) == 1)
        if table is None:
            log.info("%s: skipping unreadable VOI LUT item %d", path, i)
            continue
        n = len(table.data)
        name = str(item.get("LUTExplanation", "") or f"VOI LUT {i + 1}")
        windows.append(Window(table.first_mapped + n / 2.0, float(n), "LINEAR", name, table))
    return tuple(windows)


def _voi_lut_table(item: Dataset, signed: bool) -> VoiLutTable | None:
    try:
        n, first, bits = (int(v) for v in item.LUTDescriptor)
        raw = item.LUTData
    except (AttributeError, ValueError, TypeError):
        return None
    n = n or 65536  # PS3.3 C.11.1.1: 0 means 2**16 entries
    if signed and first > 32767:  # first mapped value written as US for signed pixels
        first -= 65536
    if isinstance(raw, bytes | bytearray):
        data = np.frombuffer(raw, dtype="<u2" if bits > 8 or len(raw) >= 2 * n else "u1")
    else:
        data = np.asarray(raw if isinstance(raw, list | tuple) else [raw], dtype=np.float64)
    if data.size < n:
        return None
    return VoiLutTable(first, bits, np.asarray(data[:n], dtype=np.float64))


def pixel_spacing_of(ds: Dataset) -> tuple[tuple[float, float] | None, str | None]:
    """Spacing in mm (row, column) from Pixel Spacing, else Imager Pixel Spacing; zeros mean unknown."""
    for keyword, source in (("PixelSpacing", "Pixel Spacing"), ("ImagerPixelSpacing", "Imager Pixel Spacing")):
        values = _multi(ds.get(keyword))
        if len(values) >= 2 and all(v is not None and v > 0 for v in values[:2]):
            return (float(values[0]), float(values[1])), source  # type: ignore[arg-type]
    return None, None


def _multi(value: object, keep_text: bool = False) -> list:
    """A DICOM value that may be single or multi-valued, as a list (floats unless keep_text)."""
    if value is None or value == "":
        return []
    items = list(value) if isinstance(value, list | tuple) or hasattr(value, "__iter__") and not isinstance(value, str | bytes) else [value]
    if keep_text:
        return items
    out: list[float | None] = []
    for item in items:
        try:
            out.append(float(item))
        except (TypeError, ValueError):
            out.append(None)
    return out


def _int(value: object, default: int) -> int:
    try:
        return int(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return default


def _float(value: object, default: float) -> float:
    try:
        return float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return default


def _short(exc: BaseException, limit: int = 300) -> str:
    lines = [line.strip() for line in str(exc).strip().splitlines() if line.strip()]
    text = " ".join(lines) if lines else type(exc).__name__
    return text if len(text) <= limit else text[: limit - 1] + "…"
