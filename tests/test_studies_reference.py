"""``radreview render`` against an independent toolkit (DCMTK) at the file's first window."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from radreview.cli import main
from radreview.studies import decode_image, index_paths

# dcm2img is DCMTK's newer unified tool; dcmj2pnm (with JPEG support) and dcm2pnm are older names.
DCMTK_TOOL = next((shutil.which(t) for t in ("dcm2img", "dcmj2pnm", "dcm2pnm") if shutil.which(t)), None)
needs_dcmtk = pytest.mark.skipif(DCMTK_TOOL is None, reason="DCMTK (dcm2img/dcmj2pnm) is not installed: apt-get install dcmtk")


def _deid_cat() -> Path:
    import deid_data

    path = Path(deid_data.__file__).parent / "data" / "animals" / "cat.dcm"
    if not path.exists():
        pytest.fail(f"deid-data's cat.dcm is missing at {path}")
    return path


def _dcmtk_render(source: Path, out: Path) -> np.ndarray:
    # +Wi 1: the first Window Center/Width in the file; +on: 8-bit PNG.
    subprocess.run([DCMTK_TOOL, "+Wi", "1", "+on", str(source), str(out)], check=True, capture_output=True)
    return np.asarray(Image.open(out))


def _radreview_render(source: Path, out: Path) -> np.ndarray:
    assert main(["render", str(source), "--out", str(out)]) == 0
    return np.asarray(Image.open(out))


@needs_dcmtk
@pytest.mark.parametrize("name", ["RG3_UNCR.dcm", "RG1_UNCR.dcm", "cat.dcm"])
def test_render_agrees_with_dcmtk(name, pydicom_data_file, tmp_path):
    source = _deid_cat() if name == "cat.dcm" else pydicom_data_file(name)
    ours = _radreview_render(source, tmp_path / "ours.png").astype(np.int16)
    theirs = _dcmtk_render(source, tmp_path / "dcmtk.png").astype(np.int16)
    assert ours.shape == theirs.shape
    within_one = np.mean(np.abs(ours - theirs) <= 1)
    assert within_one >= 0.99, f"{name}: only {within_one:.4f} of pixels within 1 grey level of DCMTK"
    # Not trivially equal: the images have real content.
    assert ours.std() > 10


@pytest.mark.parametrize("name", ["RG3_UNCR.dcm", "RG1_UNCR.dcm"])
def test_monochrome1_shows_bone_white(name, pydicom_data_file, tmp_path):
    """In MONOCHROME1 bone has the lowest stored values; on screen it must be the brightest."""
    path = pydicom_data_file(name)
    image = decode_image(index_paths([path]).images()[0])
    assert image.photometric == "MONOCHROME1"
    shown = _radreview_render(path, tmp_path / "out.png")
    pixels = image.pixels
    densest = pixels <= np.percentile(pixels, 5)  # lowest stored values = most attenuation
    thinnest = pixels >= np.percentile(pixels, 95)
    assert shown[densest].mean() > shown[thinnest].mean() + 100


def test_render_writes_the_requested_window_and_frame(pydicom_data_file, tmp_path):
    source = pydicom_data_file("emri_small.dcm")  # 10 frames
    out = tmp_path / "f3.png"
    assert main(["render", str(source), "--out", str(out), "--frame", "3", "--window", "100", "200"]) == 0
    image = decode_image(index_paths([source]).images()[0], frame=3)
    expected = np.clip(((image.pixels - 99.5) / 199 + 0.5) * 255, 0, 255)
    np.testing.assert_array_equal(np.asarray(Image.open(out)), np.floor(expected + 0.5).astype(np.uint8))


def test_render_bad_input_exits_2_with_a_message(tmp_path, capsys, pydicom_data_file):
    fake = tmp_path / "fake.dcm"
    fake.write_bytes(b"this is not DICOM at all" * 10)
    assert main(["render", str(fake), "--out", str(tmp_path / "o.png")]) == 2
    assert "fake.dcm" in capsys.readouterr().err
    assert main(["render", str(tmp_path / "missing.dcm"), "--out", str(tmp_path / "o.png")]) == 2
    assert "missing.dcm" in capsys.readouterr().err
    source = pydicom_data_file("emri_small.dcm")
    assert main(["render", str(source), "--out", str(tmp_path / "o.png"), "--frame", "99"]) == 2
    assert "frame 99" in capsys.readouterr().err
    sr = pydicom_data_file("RG3_UNCR.dcm").parent  # any folder: render wants a file
    assert main(["render", str(sr), "--out", str(tmp_path / "o.png")]) == 2
