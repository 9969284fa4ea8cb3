"""Decoding one image (one frame) on demand: stored values ▸ Modality LUT, plus its VOI presets.

Grey images keep a compact form next to ``pixels``: ``stored_index`` (uint16/uint32 offsets
from the smallest stored value) and ``value_table`` (the Modality LUT output for each offset).
:func:`radreview.studies.display.render_display` then windows the table, not the image, which is
what makes interactive window/level fast on 1760x1760 radiographs.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from pydicom.dataset import Dataset

from radreview.studies.dicomio import (
    read_dataset,
    sop_class_name,
    transfer_syntax_of,
    unsupported_transfer_syntax_reason,
)
from radreview.studies.errors import StudyLoadError
from radreview.studies.model import ImageEntry
from radreview.studies.voi import VOI_FUNCTIONS, VoiLutTable, Window, window_from_range

log = logging.getLogger(__name__)

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
    try:
        if entry.kind == "raster":
            from radreview.studies.raster import decode_raster

            return decode_raster(entry.path, frame)
        return decode_dicom(entry.path, frame)
    except StudyLoadError:
        raise
    except MemoryError as exc:
        raise StudyLoadError(entry.path, "not enough memory to decode this image") from exc
    except Exception as exc:  # noqa: BLE001 - callers (the viewer) expect StudyLoadError only
        log.debug("unexpected error decoding %s", entry.path, exc_info=True)
        raise StudyLoadError(entry.path, f"could not be decoded ({type(exc).__name__}: {_short(exc)})") from exc


def decode_dicom(path: Path, frame: int = 0) -> DecodedImage:
    """Decode frame ``frame`` of a DICOM file (any transfer syntax pydicom's backends decode)."""
    path = Path(path)
    ds = read_dataset(path, header_only=False)
    if not any(k in ds for k in ("PixelData", "FloatPixelData", "DoubleFloatPixelData")):
        # pydicom returns an empty dataset for a file whose encapsulated pixel data is cut off,
        # so look at the header alone to tell "truncated image" from "not an image".
        if "Rows" in ds or "Rows" in read_dataset(path, header_only=True):
            raise StudyLoadError(path, "file is truncated or damaged: its pixel data is missing")
        name = sop_class_name(str(ds.get("SOPClassUID", "")))
        raise StudyLoadError(path, f"contains no image: no pixel data ({name})")
    ts = transfer_syntax_of(ds)
    reason = unsupported_transfer_syntax_reason(ts, _int(ds.get("BitsStored"), 0))
    if reason:
        raise StudyLoadError(path, reason)
    n_frames = _int(ds.get("NumberOfFrames"), 1) or 1
    if not 0 <= frame < n_frames:
        raise StudyLoadError(path, f"frame {frame} does not exist (the file has {n_frames})")
    photometric = str(ds.get("PhotometricInterpretation", "")).strip().upper()
    if "TransferSyntaxUID" not in getattr(ds, "file_meta", {}):
        # Files without (0002,0010) (raw datasets, some old exports): tell the decoder what
        # encoding pydicom found while reading.
        from pydicom.dataset import FileMetaDataset

        ds.file_meta = getattr(ds, "file_meta", None) or FileMetaDataset()
        ds.file_meta.TransferSyntaxUID = ts
    try:
        stored = _pixel_array(ds, frame, ts)
    except Exception as exc:  # noqa: BLE001 - decoders raise many types; all mean "cannot decode"
        raise StudyLoadError(path, f"could not decode the pixel data ({ts.name}): {_short(exc)}") from exc
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
    if photometric in ("MONOCHROME1", "MONOCHROME2") or (stored.ndim == 2 and photometric != "PALETTE COLOR"):
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


# Measured (tests/benchmarks): pydicom tries its own numpy RLE decoder first, about 8x slower
# than pylibjpeg-rle on a 1760x1760 CR, so ask for the faster plugin where it is installed.
PREFERRED_PLUGINS = {"1.2.840.10008.1.2.5": "pylibjpeg"}


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


def _pixel_array(ds: Dataset, frame: int, ts: str) -> np.ndarray:
    from pydicom.pixels import get_decoder, pixel_array

    plugin = PREFERRED_PLUGINS.get(str(ts), "")
    if plugin and plugin in get_decoder(ts).available_plugins:
        try:
            return pixel_array(ds, index=frame, decoding_plugin=plugin)
        except Exception:  # noqa: BLE001 - fall back to pydicom's own choice below
            log.debug("%s plugin failed; trying the others", plugin, exc_info=True)
    return pixel_array(ds, index=frame)


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
    if np.issubdtype(stored.dtype, np.integer) and stored.size:
        low, high = int(stored.min()), int(stored.max())
        if high - low < MAX_TABLE_SIZE:
            table = apply_modality_lut(np.arange(low, high + 1, dtype=np.int64), ds).astype(np.float64)
            index_dtype = np.uint16 if high - low < 65536 else np.uint32
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
