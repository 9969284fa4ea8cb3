"""Compressed transfer syntaxes decode through pydicom's backends to the same pixels."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from pydicom.data import get_testdata_file

from radreview.studies import decode_image, index_paths, render_display


def _file(name: str) -> Path:
    path = get_testdata_file(name)
    if path is None:
        pytest.fail(f"{name} is not in pydicom's test files or pydicom-data")
    return Path(path)


def _decode(name: str, frame: int = 0):
    index = index_paths([_file(name)])
    assert not index.problems, index.problems
    return decode_image(index.images()[0], frame)


# (compressed file, its uncompressed twin, transfer syntax name) - lossless: identical pixels.
LOSSLESS_PAIRS = [
    ("MR_small_RLE.dcm", "MR_small.dcm", "RLE Lossless"),
    ("MR_small_jpeg_ls_lossless.dcm", "MR_small.dcm", "JPEG-LS Lossless"),
    ("MR_small_jp2klossless.dcm", "MR_small.dcm", "JPEG 2000 lossless"),
    ("emri_small_jpeg_2k_lossless.dcm", "emri_small.dcm", "JPEG 2000 lossless, multi-frame"),
    ("emri_small_RLE.dcm", "emri_small.dcm", "RLE, multi-frame"),
    ("SC_rgb_rle.dcm", "SC_rgb.dcm", "RLE colour"),
    ("RG1_J2KR.dcm", "RG1_UNCR.dcm", "JPEG 2000 lossless radiograph"),
]


@pytest.mark.parametrize(("compressed", "plain", "what"), LOSSLESS_PAIRS, ids=[p[2] for p in LOSSLESS_PAIRS])
def test_lossless_syntaxes_give_the_uncompressed_pixels(compressed, plain, what):
    last = _decode(plain).number_of_frames - 1
    for frame in sorted({0, last}):
        np.testing.assert_array_equal(_decode(compressed, frame).pixels, _decode(plain, frame).pixels)


@pytest.mark.parametrize(
    ("name", "shape"),
    [
        ("JPEG2000.dcm", (1024, 256)),  # JPEG 2000
        ("JPEG-LL.dcm", (1024, 256)),  # JPEG Lossless, Process 14
        ("JPGLosslessP14SV1_1s_1f_8b.dcm", (768, 1024)),  # JPEG Lossless SV1
        ("JPEGLSNearLossless_16.dcm", (50, 10)),  # JPEG-LS near-lossless
        ("SC_rgb_jpeg_dcmtk.dcm", (100, 100, 3)),  # JPEG Baseline, YBR -> RGB
        ("RG3_J2KI.dcm", (1760, 1760)),  # JPEG 2000 lossy radiograph
    ],
)
def test_compressed_files_decode_and_render(name, shape):
    image = _decode(name)
    assert image.pixels.shape == shape
    shown = render_display(image)
    assert shown.dtype == np.uint8 and shown.shape == shape
    assert shown.std() > 5  # real content, not a blank frame


def test_jpeg2000_lossy_is_close_to_the_original():
    lossy, plain = _decode("RG3_J2KI.dcm"), _decode("RG3_UNCR.dcm")
    difference = np.abs(render_display(lossy).astype(int) - render_display(plain).astype(int))
    assert np.median(difference) <= 2


def test_jpeg_baseline_colour_matches_the_uncompressed_twin():
    lossy, plain = _decode("SC_rgb_jpeg_dcmtk.dcm"), _decode("SC_rgb.dcm")
    assert lossy.is_color and plain.is_color
    assert np.abs(lossy.pixels.astype(int) - plain.pixels.astype(int)).mean() < 3


def test_multiframe_exposes_every_frame():
    entry = index_paths([_file("SC_rgb_rle_2frame.dcm")]).images()[0]
    assert entry.number_of_frames == 2
    first, second = decode_image(entry, 0), decode_image(entry, 1)
    assert first.number_of_frames == 2 and second.frame == 1
    assert not np.array_equal(first.pixels, second.pixels)


def test_12bit_jpeg_extended_is_reported_not_raised():
    """No permissive decoder reads 12-bit JPEG Extended: a clear problem, at indexing already."""
    index = index_paths([_file("JPEG-lossy.dcm")])
    assert not index.images()
    [problem] = index.problems
    assert problem.path.name == "JPEG-lossy.dcm" and "12-bit JPEG Extended" in problem.reason
