"""The bundled demo studies: present, small, openable, fake patients, attributed, reproducible."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import numpy as np
import pydicom
from pydicom.data import get_testdata_file

from radreview.studies import decode_image, demo_dir, index_paths, render_display

REPO = Path(__file__).resolve().parents[1]


def test_demo_dir_is_the_repository_folder():
    assert demo_dir() == REPO / "resources" / "demo"
    assert (demo_dir() / "README.md").exists()


def test_demo_is_small_and_opens_without_problems():
    files = [p for p in demo_dir().rglob("*") if p.is_file()]
    assert sum(p.stat().st_size for p in files) < 6_000_000
    index = index_paths([demo_dir()])
    assert not index.problems
    assert len(index.images()) == 9  # 5 converted DICOM, 3 JPEG, 1 CR
    for entry in index.images():
        shown = render_display(decode_image(entry))
        assert shown.dtype == np.uint8 and shown.std() > 10


def test_demo_has_a_two_view_study_with_a_dicomdir():
    index = index_paths([demo_dir() / "DEMO_LEG" / "DICOMDIR"])
    [study] = index.studies()
    assert [e.view_position for e in study.images()] == ["AP", "LATERAL"]
    assert {e.body_part for e in study.images()} == {"LEG"}


def test_demo_patients_are_clearly_fake():
    index = index_paths([demo_dir()])
    dicom_patients = [p for p in index.patients if p.key.startswith("DEMO-")]
    assert len(dicom_patients) == 4
    assert all(p.name.startswith("DEMO ") for p in dicom_patients)


def test_the_demo_cr_has_the_pixels_of_rg3_uncr():
    [entry] = index_paths([demo_dir() / "pydicom-data" / "RG3_RLE.dcm"]).images()
    original = pydicom.dcmread(get_testdata_file("RG3_UNCR.dcm"))
    np.testing.assert_array_equal(decode_image(entry).pixels, original.pixel_array.astype(np.float32))


def test_attribution_is_in_the_demo_readme():
    text = (demo_dir() / "README.md").read_text()
    assert "FracAtlas" in text and "CC BY 4.0" in text and "10.1038/s41597-023-02432-4" in text
    for path in demo_dir().glob("DEMO_*/*.dcm"):
        assert "FracAtlas" in str(pydicom.dcmread(path, stop_before_pixels=True).DerivationDescription)


def test_the_demo_script_is_deterministic(tmp_path, fracatlas_dir):
    spec = importlib.util.spec_from_file_location("make_demo_studies", REPO / "scripts" / "make_demo_studies.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    try:
        spec.loader.exec_module(module)
    finally:
        sys.modules.pop(spec.name, None)
    written = module.build(fracatlas_dir, tmp_path)
    for path in written:
        shipped = demo_dir() / path.relative_to(tmp_path)
        assert shipped.read_bytes() == path.read_bytes(), f"{shipped} differs from a fresh build"
