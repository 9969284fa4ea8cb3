"""The fast paths of batch prediction give what the exact paths give (no timings here).

Decoding straight to display grey, the one-pass normalisation, the heatmap blend table, the PNG
writer and the provider choice on a CPU-only machine, each against the code it replaces.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from radreview.cli import main
from radreview.inference.cam import CamDisplay, blend
from radreview.inference.card import InputCard
from radreview.inference.fast_decode import display_gray, read_display_gray
from radreview.inference.heatmap_files import jpeg_bytes, overlay, png_bytes
from radreview.inference.preprocess import letterbox_with_geometry, normalise, prepare, to_display_gray
from radreview.inference.sessions import _candidates, available_providers, create_session, cuda_device_count
from radreview.inference.toy import toy_card, write_toy_model
from radreview.studies import StudyLoadError, decode_image, index_paths, render_display

REPO = Path(__file__).resolve().parents[1]


def viewer_gray(path: Path) -> np.ndarray:
    """The exact path: what the viewer decodes and displays, as the models take it."""
    return to_display_gray(render_display(decode_image(index_paths([path]).images()[0])))


def test_plain_rasters_decode_straight_to_the_viewer_s_grey(fracatlas_dir, tmp_path):
    jpegs = sorted((fracatlas_dir / "images").rglob("*.jpg"))[:40]
    modes = set()
    for path in jpegs:
        modes.add(Image.open(path).mode)
        fast = read_display_gray(path)
        assert fast is not None and np.array_equal(fast, viewer_gray(path)), path
    assert {"L", "RGB"} <= modes  # FracAtlas has both grey and RGB-stored JPEGs
    rng = np.random.default_rng(0)
    colour = rng.integers(0, 256, (50, 70, 3), dtype=np.uint8)
    Image.fromarray(colour).save(tmp_path / "colour.png")
    Image.fromarray(colour[..., 0]).save(tmp_path / "grey.png")
    for name in ("colour.png", "grey.png"):
        assert np.array_equal(read_display_gray(tmp_path / name), viewer_gray(tmp_path / name))


def test_other_files_take_the_viewer_s_path(tmp_path):
    deep = (np.arange(60 * 80, dtype=np.uint16).reshape(60, 80) * 13)
    Image.fromarray(deep).save(tmp_path / "deep.png")  # 16-bit: stretched by the display pipeline
    assert read_display_gray(tmp_path / "deep.png") is None
    for path in (tmp_path / "deep.png", REPO / "resources" / "demo" / "DEMO_HAND" / "IMG0000019.dcm"):
        entry = index_paths([path]).images()[0]
        assert np.array_equal(display_gray(entry), viewer_gray(path))


def _local_dicom_files() -> list[Path]:
    """Every DICOM file on this machine's pip packages and in the demo: pydicom's own test files
    (JPEG, JPEG-LS, JPEG 2000, RLE, deflated, signed, big-endian, palette, multi-frame, broken),
    pydicom-data's CR/DX/MR/CT, deid-data's, and the bundled demo studies."""
    import data_store
    import deid_data
    import pydicom

    roots = (Path(pydicom.__file__).parent / "data", Path(data_store.__file__).parent,
             Path(deid_data.__file__).parent, REPO / "resources" / "demo")
    return sorted({p for root in roots for p in root.rglob("*.dcm") if p.is_file()})


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore:Expected explicit VR, but found implicit VR")  # pydicom on a mislabelled test file
def test_dicom_display_levels_are_the_viewer_s_first_display_on_every_local_dicom():
    """The batch path's DICOM decoding (no float copy) gives bit for bit what the viewer shows,
    and fails with the viewer's own message where the viewer's decoder fails."""
    from radreview.studies.pixels import decode_dicom, dicom_display_levels

    files = _local_dicom_files()
    same = failed = 0
    for path in files:
        try:
            expected = render_display(decode_dicom(path))
        except StudyLoadError as exc:
            with pytest.raises(StudyLoadError) as caught:
                dicom_display_levels(path)
            assert str(caught.value) == str(exc), path
            failed += 1
            continue
        fast = dicom_display_levels(path)
        assert fast.dtype == expected.dtype and np.array_equal(fast, expected), path
        same += 1
    assert same >= 140 and failed >= 10, (same, failed)  # both kinds really occurred


def test_dicom_display_levels_follow_monochrome1_rescale_and_a_non_monotonic_modality_lut(tmp_path, pydicom_data_file):
    """The cases the single lookup table must get right without the viewer's arrays: MONOCHROME1
    (the CR lower leg), a rescale with signed stored values and no window (data range), and a
    Modality LUT that folds values back (its data range is over the values present, not the
    table's ends)."""
    import pydicom
    from pydicom.dataset import Dataset

    from radreview.studies.pixels import decode_dicom, dicom_display_levels

    cr = pydicom_data_file("RG3_UNCR.dcm")
    assert pydicom.dcmread(cr, stop_before_pixels=True).PhotometricInterpretation == "MONOCHROME1"
    assert np.array_equal(dicom_display_levels(cr), render_display(decode_dicom(cr)))
    ds = pydicom.dcmread(cr)
    rng = np.random.default_rng(5)
    signed = rng.integers(-900, 1500, (64, 48)).astype(np.int16)
    for name in ("WindowCenter", "WindowWidth", "WindowCenterWidthExplanation", "VOILUTSequence"):
        if name in ds:
            delattr(ds, name)
    ds.Rows, ds.Columns = signed.shape
    ds.BitsAllocated = ds.BitsStored = 16
    ds.HighBit, ds.PixelRepresentation = 15, 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.RescaleSlope, ds.RescaleIntercept = 2, -1024
    ds.PixelData = signed.tobytes()
    ds.save_as(tmp_path / "signed.dcm", enforce_file_format=True)
    assert np.array_equal(dicom_display_levels(tmp_path / "signed.dcm"), render_display(decode_dicom(tmp_path / "signed.dcm")))
    unsigned = rng.integers(0, 8, (40, 30)).astype(np.uint16)
    unsigned[0, 0], unsigned[0, 1] = 0, 7
    for name in ("RescaleSlope", "RescaleIntercept"):
        delattr(ds, name)
    ds.PixelRepresentation, ds.BitsStored, ds.HighBit = 0, 12, 11
    ds.Rows, ds.Columns = unsigned.shape
    lut = Dataset()
    lut.LUTDescriptor = [8, 0, 16]
    lut.ModalityLUTType = "US"
    lut.add_new(0x00283006, "US", [100, 900, 4000, 300, 50, 2000, 800, 10])  # LUT Data, not monotonic: the maximum is at 2
    ds.ModalityLUTSequence = [lut]
    ds.PixelData = unsigned.tobytes()
    ds.save_as(tmp_path / "folded.dcm", enforce_file_format=True)
    expected = render_display(decode_dicom(tmp_path / "folded.dcm"))
    assert np.array_equal(dicom_display_levels(tmp_path / "folded.dcm"), expected) and expected.max() == 255


def test_dicom_display_levels_of_32_bit_data_far_from_zero_need_no_huge_table(tmp_path):
    """Stored values near 4e9 (a narrow range far from zero) take offsets from the smallest value:
    indexing by the value itself would need a 4 GB table."""
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, generate_uid

    from radreview.studies.pixels import decode_dicom, dicom_display_levels

    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.SOPClassUID = ds.file_meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.7"
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    stored = (np.random.default_rng(8).integers(0, 3000, (40, 30)) + 4_000_000_000).astype(np.uint32)
    ds.Rows, ds.Columns = stored.shape
    ds.BitsAllocated = ds.BitsStored = 32
    ds.HighBit, ds.PixelRepresentation, ds.SamplesPerPixel = 31, 0, 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.PixelData = stored.tobytes()
    ds.save_as(tmp_path / "u32.dcm", enforce_file_format=True)
    fast = dicom_display_levels(tmp_path / "u32.dcm")
    # (the data range is float32, as the viewer keeps it: at 4e9 its steps are 256 apart)
    assert np.array_equal(fast, render_display(decode_dicom(tmp_path / "u32.dcm"))) and fast.max() > 200


@pytest.mark.parametrize("spec", [InputCard(320, 320), InputCard(96, 128, mean=(0.5, 0.4, 0.3), std=(0.2, 0.25, 0.3), pad_value=0.25),
                                  InputCard(64, 64, resize="stretch")])
def test_one_pass_normalisation_is_bit_identical_to_letterbox_then_normalise(spec):
    rng = np.random.default_rng(2)
    for shape in ((300, 200), (37, 512), (64, 64)):
        gray = rng.integers(0, 256, shape, dtype=np.uint8)
        canvas, geometry = letterbox_with_geometry(gray, spec.height, spec.width, spec.pad_value, spec.resize)
        expected = normalise(canvas, spec.mean, spec.std)
        tensor, geometry2 = prepare(gray, spec)
        assert geometry2 == geometry and tensor.dtype == np.float32 and np.array_equal(tensor, expected)
        out = np.full((3, spec.height, spec.width), np.nan, np.float32)
        assert prepare(gray, spec, out=out)[0] is out and np.array_equal(out, expected)


def test_the_blend_table_matches_alpha_compositing_within_one_level():
    rng = np.random.default_rng(3)
    gray = rng.integers(0, 256, (120, 90), dtype=np.uint8)
    heat = np.clip(rng.normal(0.4, 0.4, gray.shape), 0, 1).astype(np.float32)
    for colormap, opacity in (("jet", 0.5), ("inferno", 0.8), ("hot", 0.0)):
        expected = blend(gray, heat, colormap, opacity).astype(int)
        assert np.abs(overlay(gray, heat.copy(), colormap, opacity).astype(int) - expected).max() <= 1


def test_png_and_jpeg_files_read_back(tmp_path):
    rng = np.random.default_rng(4)
    rgb = rng.integers(0, 256, (33, 47, 3), dtype=np.uint8)
    rgb[10:20] = rgb[9:19]  # repeated rows: the Up filter's zero rows
    with Image.open(io.BytesIO(png_bytes(rgb, {"Description": "heatmap, p=0.9", "Software": "radreview"}))) as image:
        assert image.mode == "RGB" and np.array_equal(np.asarray(image), rgb)
        assert image.text == {"Description": "heatmap, p=0.9", "Software": "radreview"}
    with Image.open(io.BytesIO(png_bytes(rgb[..., 0]))) as image:
        assert image.mode == "L" and np.array_equal(np.asarray(image), rgb[..., 0])
    with Image.open(io.BytesIO(jpeg_bytes(rgb, "radreview heatmap"))) as image:
        assert image.size == (47, 33) and image.info.get("comment") == b"radreview heatmap"
    with pytest.raises(ValueError, match="png_bytes expects"):
        png_bytes(np.zeros((4, 4, 4), np.uint8))


def test_png_files_read_back_with_either_deflate(monkeypatch):
    """ISA-L (the dependency) and the standard zlib (where python-isal is missing) both write PNGs
    that read back exactly; the overlay they compress is contiguous RGB."""
    import zlib

    from radreview.inference import heatmap_files

    rng = np.random.default_rng(6)
    gray = rng.integers(0, 256, (61, 45), dtype=np.uint8)
    rgb = overlay(gray, rng.random(gray.shape, dtype=np.float32))
    assert rgb.shape == (61, 45, 3) and rgb.flags["C_CONTIGUOUS"]
    assert heatmap_files.DEFLATE == "isal"
    encoded = {}
    for name, deflate in (("isal", heatmap_files._deflate), ("zlib", zlib)):
        monkeypatch.setattr(heatmap_files, "_deflate", deflate)
        encoded[name] = png_bytes(rgb, {"Software": "radreview"})
        with Image.open(io.BytesIO(encoded[name])) as image:
            assert np.array_equal(np.asarray(image), rgb), name
    assert encoded["isal"] != encoded["zlib"]  # two compressors really ran


def test_predict_writes_jpeg_heatmaps_and_refuses_an_unknown_format(tmp_path, capsys):
    write_toy_model(tmp_path / "models" / "toy.onnx", toy_card("toy", [("bright", "abnormality")]))
    pixels = np.zeros((80, 60), np.uint8)
    pixels[20:60, 10:50] = 255
    Image.fromarray(pixels).save(tmp_path / "in.png")
    args = ["predict", str(tmp_path / "in.png"), "--models", str(tmp_path / "models"), "--out", str(tmp_path / "r.csv"),
            "--cam-dir", str(tmp_path / "cams"), "--cam-all", "--quiet"]
    assert main([*args, "--cam-format", "jpeg"]) == 0
    files = sorted((tmp_path / "cams").iterdir())
    assert [f.suffix for f in files] == [".jpg"]
    with Image.open(files[0]) as image:
        assert image.size == (60, 80)
    from radreview.inference.batch import predict_paths
    from radreview.inference.engine import Engine
    from radreview.inference.registry import discover

    with pytest.raises(ValueError, match="unknown heatmap format 'gif'"):
        predict_paths([tmp_path / "in.png"], Engine(discover([tmp_path / "models"]).models), cam_dir=tmp_path / "c",
                      cam_format="gif")


@pytest.mark.skipif(cuda_device_count() > 0, reason="this machine has a GPU")
def test_a_cpu_only_machine_never_tries_cuda(tmp_path):
    # an onnxruntime-gpu build lists CUDA on any machine; without a GPU it is not offered at all
    gpu_build = ["CUDAExecutionProvider", "CPUExecutionProvider"]
    assert available_providers(gpu_build) == ["cpu"]
    assert _candidates("auto", gpu_build) == (["cpu"], "")
    tried, note = _candidates("cuda", gpu_build)
    assert tried == ["cpu"] and "the CUDA driver sees no GPU" in note
    write_toy_model(tmp_path / "toy.onnx", toy_card("toy", [("bright", "abnormality")]))
    session, info = create_session(tmp_path / "toy.onnx", "auto")
    assert session.get_providers() == ["CPUExecutionProvider"] and info.provider == "cpu" and info.note == ""
