"""The pixel pipeline: VOI functions against PS3.3 C.11.2.1.2, Modality LUT, display order."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, SecondaryCaptureImageStorage, generate_uid

from radreview.studies import (
    Window,
    apply_window,
    bone_window,
    decode_image,
    index_paths,
    render_display,
    soft_tissue_window,
)
from radreview.studies.pixels import decode_dicom


def linear_reference(x: float, c: float, w: float, ymin: float = 0.0, ymax: float = 255.0) -> float:
    """PS3.3 C.11.2.1.2.1, written out as the standard prints it."""
    if x <= c - 0.5 - (w - 1) / 2:
        return ymin
    if x > c - 0.5 + (w - 1) / 2:
        return ymax
    return ((x - (c - 0.5)) / (w - 1) + 0.5) * (ymax - ymin) + ymin


def linear_exact_reference(x: float, c: float, w: float, ymin: float = 0.0, ymax: float = 255.0) -> float:
    """PS3.3 C.11.2.1.3.2."""
    if x <= c - w / 2:
        return ymin
    if x > c + w / 2:
        return ymax
    return ((x - c) / w + 0.5) * (ymax - ymin) + ymin


def sigmoid_reference(x: float, c: float, w: float, ymin: float = 0.0, ymax: float = 255.0) -> float:
    """PS3.3 C.11.2.1.3.1."""
    return (ymax - ymin) / (1 + math.exp(-4 * (x - c) / w)) + ymin


@pytest.mark.parametrize(
    ("function", "reference"),
    [("LINEAR", linear_reference), ("LINEAR_EXACT", linear_exact_reference), ("SIGMOID", sigmoid_reference)],
)
@pytest.mark.parametrize(("center", "width"), [(550.0, 1024.0), (40.0, 400.0), (0.0, 2.0), (-1000.5, 3.0)])
def test_voi_functions_follow_the_standard(function, reference, center, width):
    xs = np.linspace(center - width, center + width, 2001)
    got = apply_window(xs, Window(center, width, function))
    expected = np.array([reference(float(x), center, width) for x in xs])
    np.testing.assert_allclose(got, expected, atol=1e-9)


def test_linear_window_edges_are_exact():
    # C=2048, W=4096 on 12-bit data: 0 -> 0, 4095 -> 255 and the midpoint is 127.5.
    window = Window(2048, 4096, "LINEAR")
    values = apply_window(np.array([-5.0, 0.0, 2047.5, 4095.0, 5000.0]), window)
    np.testing.assert_allclose(values, [0, 0, 127.5, 255, 255])


def test_linear_width_one_is_a_threshold():
    values = apply_window(np.array([9.0, 9.4, 9.6, 11.0]), Window(10, 1, "LINEAR"))
    np.testing.assert_array_equal(values, [0, 0, 255, 255])


def _write_dicom(path: Path, stored: np.ndarray, **attributes) -> Path:
    """A small Secondary Capture file with the given stored values and header attributes."""
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = SecondaryCaptureImageStorage
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID = SecondaryCaptureImageStorage
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.StudyInstanceUID = generate_uid()
    ds.SeriesInstanceUID = generate_uid()
    ds.PatientID = "TEST"
    ds.Modality = "OT"
    ds.Rows, ds.Columns = stored.shape
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    signed = stored.dtype.kind == "i"
    ds.BitsAllocated = 16
    ds.BitsStored = 16
    ds.HighBit = 15
    ds.PixelRepresentation = 1 if signed else 0
    for key, value in attributes.items():
        setattr(ds, key, value)
    ds.PixelData = stored.astype("<i2" if signed else "<u2").tobytes()
    ds.save_as(path, enforce_file_format=True)
    return path


def _decode(path: Path):
    return decode_image(index_paths([path]).images()[0])


def test_rescale_slope_intercept_is_the_modality_lut(tmp_path):
    stored = np.arange(12, dtype=np.uint16).reshape(3, 4) * 100
    image = _decode(_write_dicom(tmp_path / "ct.dcm", stored, RescaleSlope="0.5", RescaleIntercept="-1024"))
    np.testing.assert_allclose(image.pixels, stored * 0.5 - 1024)
    assert image.modality_lut == "rescale"
    assert image.value_range == (-1024.0, 1100 * 0.5 - 1024)


def test_modality_lut_sequence_maps_through_the_table(tmp_path):
    item = Dataset()
    item.LUTDescriptor = [4, 10, 16]  # 4 entries, first mapped value 10
    item.ModalityLUTType = "OD"
    item.add_new(0x00283006, "US", [100, 200, 300, 400])  # LUT Data
    stored = np.array([[5, 10, 11], [12, 13, 20]], dtype=np.uint16)
    image = _decode(_write_dicom(tmp_path / "mlut.dcm", stored, ModalityLUTSequence=[item]))
    # Below the first entry -> first value, above the last -> last value (PS3.3 C.11.1.1).
    np.testing.assert_allclose(image.pixels, [[100, 100, 200], [300, 400, 400]])
    assert image.modality_lut == "Modality LUT Sequence"


def test_all_window_presets_and_the_voi_lut_function_are_read(tmp_path):
    stored = np.arange(100, dtype=np.uint16).reshape(10, 10)
    path = _write_dicom(
        tmp_path / "w.dcm", stored, WindowCenter=["50", "20"], WindowWidth=["100", "10"],
        WindowCenterWidthExplanation=["NORMAL", "HARD"], VOILUTFunction="SIGMOID",
    )
    image = _decode(path)
    assert [(w.center, w.width, w.function, w.name) for w in image.windows] == [
        (50, 100, "SIGMOID", "NORMAL"), (20, 10, "SIGMOID", "HARD"),
    ]
    shown = render_display(image)
    expected = np.floor(np.array([sigmoid_reference(x, 50, 100) for x in range(100)]) + 0.5).reshape(10, 10)
    np.testing.assert_array_equal(shown, expected)


def test_window_from_data_when_the_file_has_none(tmp_path):
    stored = (np.arange(400, dtype=np.uint16).reshape(20, 20) + 1000)
    image = _decode(_write_dicom(tmp_path / "nowin.dcm", stored))
    shown = render_display(image)
    assert shown.min() == 0 and shown.max() == 255
    assert shown[0, 0] == 0 and shown[-1, -1] == 255


def test_voi_lut_sequence_matches_pydicom(pydicom_data_file):
    path = pydicom_data_file("vlut_04.dcm")
    image = decode_dicom(path)
    assert image.windows[0].lut is not None
    ds = pydicom.dcmread(path)
    from pydicom.pixels import apply_voi

    expected = apply_voi(ds.pixel_array, ds, 0).astype(np.float64) / 65535.0 * 255.0
    np.testing.assert_array_equal(render_display(image), np.floor(expected + 0.5).astype(np.uint8))


def test_monochrome1_is_inverted_and_presentation_lut_inverse_flips(tmp_path):
    stored = np.array([[0, 100], [200, 255]], dtype=np.uint16)
    window = dict(WindowCenter="128", WindowWidth="256")
    m2 = _decode(_write_dicom(tmp_path / "m2.dcm", stored, **window))
    m1 = _decode(_write_dicom(tmp_path / "m1.dcm", stored, PhotometricInterpretation="MONOCHROME1", **window))
    inverse = _decode(_write_dicom(tmp_path / "inv.dcm", stored, PresentationLUTShape="INVERSE", **window))
    both = _decode(_write_dicom(
        tmp_path / "m1inv.dcm", stored, PhotometricInterpretation="MONOCHROME1", PresentationLUTShape="INVERSE", **window
    ))
    np.testing.assert_array_equal(render_display(m2), stored)
    np.testing.assert_array_equal(render_display(m1), 255 - stored)
    np.testing.assert_array_equal(render_display(inverse), 255 - stored)
    # INVERSE on MONOCHROME1 restates the same inversion (DX/CR IODs); it is not applied twice.
    np.testing.assert_array_equal(render_display(both), 255 - stored)
    # The user's invert toggle flips whatever the file asked for.
    np.testing.assert_array_equal(render_display(m1, invert=True), stored)


def test_table_path_equals_direct_computation(pydicom_data_file):
    image = decode_dicom(pydicom_data_file("RG3_UNCR.dcm"))
    assert image.value_table is not None
    for window in (image.windows[0], Window(300.5, 77, "LINEAR_EXACT"), Window(600, 300, "SIGMOID")):
        direct = np.floor(apply_window(image.pixels, window) + 0.5).astype(np.uint8)
        np.testing.assert_array_equal(render_display(image, window), 255 - direct)


def test_bone_and_soft_tissue_presets_for_a_radiograph(pydicom_data_file):
    image = decode_dicom(pydicom_data_file("RG3_UNCR.dcm"))  # MONOCHROME1: bone is low
    bone, soft = bone_window(image), soft_tissue_window(image)
    low, high = image.value_range
    for window in (bone, soft):
        assert low <= window.center <= high
        assert 1 <= window.width <= high - low + 1
    assert bone.name == "Bone" and soft.name == "Soft tissue"
    # The bone window sits toward the dense end (low values here), soft tissue toward air.
    assert bone.center < soft.center
    assert render_display(image, bone).std() > 20


def test_presets_on_a_monochrome2_radiograph(repo_root):
    path = repo_root / "resources" / "demo" / "DEMO_HAND" / "IMG0000019.dcm"
    image = decode_image(index_paths([path]).images()[0])
    bone, soft = bone_window(image), soft_tissue_window(image)
    assert bone.center > soft.center  # MONOCHROME2: bone is high
    # Bone spreads the body's values: more contrast inside the body than the file's window.
    body = image.pixels > 80
    assert render_display(image, bone)[body].std() > render_display(image)[body].std()


def test_render_command_on_a_jpeg_is_the_jpeg(fracatlas_dir, tmp_path):
    from PIL import Image

    from radreview.cli import main

    source = sorted((fracatlas_dir / "images" / "Fractured").glob("*.jpg"))[0]
    assert main(["render", str(source), "--out", str(tmp_path / "out.png")]) == 0
    expected = np.asarray(Image.open(source).convert("L"))
    np.testing.assert_array_equal(np.asarray(Image.open(tmp_path / "out.png")), expected)


def test_enhanced_multiframe_functional_groups():
    """Enhanced CT keeps rescale/window/spacing in functional groups (PS3.3 C.7.6.16)."""
    from pydicom.data import get_testdata_file

    path = get_testdata_file("eCT_Supplemental.dcm")
    ds = pydicom.dcmread(path)
    image = decode_image(index_paths([path]).images()[0], frame=1)
    assert (image.windows[0].center, image.windows[0].width) == (49.0, 102.0)
    assert image.pixel_spacing == (0.388672, 0.388672)
    np.testing.assert_allclose(image.pixels, ds.pixel_array[1].astype(np.float32) - 1024)
