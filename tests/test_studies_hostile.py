"""Issue 12, files and decoders: no file kills the process, hangs it, or takes more than 1.5 GB.

Each test builds its hostile file from a real one (tests/_hostile_files.py), asserts the clear
message naming the file, that the good files beside it still open, and, where the attack was a
resource bomb, the peak memory of a fresh process doing the work.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pydicom
import pytest
from PIL import Image

import _hostile_files as hostile
from radreview.limits import Limits, LimitError, limits, parse_size, set_limits
from radreview.studies import StudyLoadError, decode_image, index_paths, render_display
from radreview.studies.archives import PREFIX, remove_stale_folders

MEMORY_BOUND_MB = 1500
posix_only = pytest.mark.skipif(os.name != "posix", reason="FIFOs, devices and rlimits are POSIX")


@pytest.fixture(autouse=True)
def default_limits():
    previous = set_limits(Limits())
    yield
    set_limits(previous)


def _problem(index, name: str) -> str:
    matching = [p for p in index.problems if p.path.name == name]
    assert len(matching) == 1, index.problems
    return matching[0].reason


def _good_images_open(index, count: int = 3) -> None:
    good = [e for e in index.images() if e.path.name in ("mr.dcm", "ct.dcm", "hip.dcm")]
    assert len(good) == count, index.problems
    for entry in good:
        assert render_display(decode_image(entry)).size


# --- decoders that abort the process ---------------------------------------------------------


@pytest.mark.parametrize("name", sorted(hostile.GDCM_ABORTS))
def test_a_frame_that_aborts_gdcm_is_a_problem_not_a_crash(tmp_path, name):
    folder = hostile.good_folder(tmp_path / "study")
    bad = hostile.gdcm_abort_file(name, folder / "bad.dcm")
    assert hostile.gdcm_kills_a_process_on(bad) == -signal.SIGABRT  # the attack is real
    index = index_paths([folder])
    entry = next(e for e in index.images() if e.path.name == "bad.dcm")  # the header is fine
    with pytest.raises(StudyLoadError, match=r"bad\.dcm: could not decode the pixel data .*crashed on this file \(SIGABRT\)"):
        decode_image(entry)
    _good_images_open(index)  # and this process, and its decoder pool, carry on
    with pytest.raises(StudyLoadError, match="SIGABRT"):
        decode_image(entry)  # a second time: a fresh child, the same answer


def test_render_command_survives_a_garbage_jpeg2000_fragment(tmp_path, capsys):
    from radreview.cli import main

    bad = hostile.gdcm_abort_file("JPEG2000.dcm", tmp_path / "garbage_j2k.dcm")
    assert main(["render", str(bad), "--out", str(tmp_path / "out.png")]) == 2
    err = capsys.readouterr().err
    assert "garbage_j2k.dcm: could not decode the pixel data (JPEG 2000 Image Compression)" in err
    assert "Traceback" not in err and not (tmp_path / "out.png").exists()
    good = tmp_path / "good.dcm"
    shutil.copy(hostile.testfile("JPEG2000.dcm"), good)
    assert main(["render", str(good), "--out", str(tmp_path / "good.png")]) == 0
    assert main(["render", str(good), "--out", str(tmp_path / "good.jpg")]) == 2  # PNG bytes under a .jpg name: refused
    assert not (tmp_path / "good.jpg").exists()


@pytest.mark.filterwarnings("ignore:The decoded RLE segment contains non-conformant padding")  # pydicom's note
def test_a_rust_panic_in_the_rle_plugin_falls_back_to_pydicom(tmp_path):
    from pydicom.pixels import pixel_array

    bad = hostile.mutated("MR_small_RLE.dcm", hostile.RLE_PANIC, tmp_path / "panic.dcm")
    with pytest.raises(BaseException) as caught:  # noqa: PT011 - the point is what kind it is
        pixel_array(pydicom.dcmread(bad), decoding_plugin="pylibjpeg")
    assert not isinstance(caught.value, Exception)  # pyo3's PanicException
    image = decode_image(index_paths([bad]).images()[0])  # pydicom's own RLE decoder reads it
    assert image.shape == (64, 64)


def test_jpeg2000_and_baseline_decode_in_process_gdcm_only_for_what_nothing_else_reads():
    from radreview.studies import isolated, pixels

    isolated.shut_down()
    for name in ("JPEG2000.dcm", "SC_rgb_jpeg_dcmtk.dcm", "MR_small_RLE.dcm"):
        decode_image(index_paths([hostile.testfile(name)]).images()[0])
        assert not isolated._idle, f"{name} started a decoder process"
    decode_image(index_paths([hostile.testfile("JPEG-LL.dcm")]).images()[0])
    assert isolated._idle  # JPEG Lossless: only gdcm reads it, in a child
    assert "gdcm" not in pixels.IN_PROCESS_PLUGINS.values()


# --- sizes claimed by headers and codestreams ------------------------------------------------

DECODE = """
from radreview.studies import StudyLoadError, decode_image, index_paths
index = index_paths([sys.argv[1]])
try:
    message = "decoded" if index.images() and decode_image(index.images()[0]) else ""
except StudyLoadError as exc:
    message = str(exc)
RESULT = {"message": message or "; ".join(p.reason for p in index.problems)}
"""


@posix_only
@pytest.mark.parametrize(("build", "codec"), [
    (lambda out: hostile.jpeg_claiming((30000, 30000), out), "JPEG"),
    (lambda out: hostile.j2k_claiming((65535, 65535), out), "JPEG 2000"),
], ids=["jpeg-30000", "j2k-65535"])
def test_compressed_frame_claiming_a_huge_size_is_refused_before_decoding(tmp_path, build, codec):
    bomb = build(tmp_path / "bomb.dcm")
    assert bomb.stat().st_size < 200_000
    result = hostile.run_measured(DECODE, str(bomb))
    assert result["message"].startswith(f"{bomb}: image too large to open: the {codec} frame header says")
    assert "max_frame_pixels" in result["message"]
    assert result["peak_mb"] < MEMORY_BOUND_MB


def test_compressed_frame_disagreeing_with_the_header_is_damaged(tmp_path):
    bad = hostile.j2k_claiming((2048, 2048), tmp_path / "liar.dcm")
    [entry] = index_paths([bad]).images()
    with pytest.raises(StudyLoadError, match=r"the JPEG 2000 frame is 2048 x 2048 pixels but the DICOM header says 256 x 1024"):
        decode_image(entry)


def test_header_claiming_a_huge_image_is_refused_at_indexing(tmp_path):
    folder = hostile.good_folder(tmp_path / "study")
    ds = pydicom.dcmread(hostile.testfile("MR_small.dcm"))
    ds.Rows = ds.Columns = 60000
    ds.save_as(folder / "huge.dcm")
    ds.Rows = ds.Columns = 2048
    ds.NumberOfFrames = 100_000
    ds.save_as(folder / "frames.dcm")
    index = index_paths([folder])
    assert "60000 x 60000 pixels per frame" in _problem(index, "huge.dcm")
    assert "100000 frames of 2048 x 2048 pixels" in _problem(index, "frames.dcm")
    assert "max_file_pixels" in _problem(index, "frames.dcm")
    _good_images_open(index)


@posix_only
def test_deflated_bomb_in_the_header_is_refused_with_bounded_memory(tmp_path):
    bomb = hostile.deflated_bomb(tmp_path / "deflate_bomb.dcm", where="header")
    assert bomb.stat().st_size < 3_000_000  # 2 MB that inflate to 2 GiB
    result = hostile.run_measured(DECODE, str(bomb))
    assert result["message"].startswith("the deflated dataset inflates to more than 268435456 bytes")
    assert "max_inflated_bytes" in result["message"]
    assert result["peak_mb"] < MEMORY_BOUND_MB


@posix_only
def test_deflated_file_with_2_gib_of_pixel_data_reads_one_frame(tmp_path):
    bomb = hostile.deflated_bomb(tmp_path / "deflate_pixels.dcm", where="pixels")
    result = hostile.run_measured(DECODE, str(bomb))
    assert result["message"] == "decoded"  # 64 x 64 as its header says, the rest never inflated
    assert result["peak_mb"] < 400


def test_a_real_deflated_file_still_decodes():
    path = hostile.testfile("image_dfl.dcm")
    image = decode_image(index_paths([path]).images()[0])
    np.testing.assert_array_equal(image.pixels, pydicom.dcmread(path).pixel_array.astype(np.float32))


@posix_only
def test_large_png_is_refused_before_pillow_decodes_it(tmp_path):
    folder = hostile.good_folder(tmp_path / "study")
    png = hostile.big_png(folder / "big.png")
    assert png.stat().st_size < 200_000
    result = hostile.run_measured(DECODE, str(png))
    assert result["message"] == "image too large to open: 13000 x 13000 pixels (169.0 megapixels; " \
        "limit max_raster_pixels = 67108864; set RADREVIEW_LIMIT_MAX_RASTER_PIXELS or --limit max_raster_pixels=N to change it)"
    assert result["peak_mb"] < MEMORY_BOUND_MB
    index = index_paths([folder])
    assert "13000 x 13000" in _problem(index, "big.png")
    _good_images_open(index)


def test_raster_limit_is_settable(tmp_path):
    path = tmp_path / "small.png"
    Image.fromarray(np.zeros((100, 200), dtype=np.uint8)).save(path)
    assert index_paths([path]).images()
    set_limits(max_raster_pixels=10_000)
    assert "200 x 100 pixels" in _problem(index_paths([path]), "small.png")


# --- files that are not what their name says ---------------------------------------------------


@pytest.mark.timeout(60)
def test_zero_filled_dcm_is_refused_at_once(tmp_path):
    folder = hostile.good_folder(tmp_path / "study")
    with open(folder / "zeros.dcm", "wb") as handle:
        handle.truncate(64 << 20)  # 64 MiB of zeros, no preamble
    with open(folder / "dicm_zeros.dcm", "wb") as handle:
        handle.write(b"\0" * 128 + b"DICM")
        handle.truncate(64 << 20)  # a preamble, then zeros
    (folder / "too_big_to_probe.dcm").write_bytes(b"\x08\x00" * ((65 << 20) // 2))
    index = index_paths([folder])
    assert _problem(index, "zeros.dcm") == "not a DICOM file (no DICM marker, and it does not start like a DICOM dataset)"
    assert _problem(index, "dicm_zeros.dcm").startswith("damaged DICOM header")
    assert "too large to be probed as a raw DICOM dataset" in _problem(index, "too_big_to_probe.dcm")
    assert "max_raw_dataset_bytes" in _problem(index, "too_big_to_probe.dcm")
    _good_images_open(index)


def test_a_raw_dataset_without_preamble_still_opens(tmp_path):
    from pydicom.filebase import DicomBytesIO
    from pydicom.filewriter import write_dataset

    ds = pydicom.dcmread(hostile.testfile("CT_small.dcm"))
    buffer = DicomBytesIO()
    buffer.is_little_endian, buffer.is_implicit_VR = True, True
    write_dataset(buffer, ds)  # no preamble, no file meta: an old ACR-NEMA style export
    raw = tmp_path / "raw.dcm"
    raw.write_bytes(buffer.getvalue())
    [entry] = index_paths([raw]).images()
    assert decode_image(entry).shape == (128, 128)


def test_dicom_without_pixel_data_is_not_called_truncated(tmp_path):
    ds = pydicom.dcmread(hostile.testfile("CT_small.dcm"))
    del ds.PixelData
    ds.save_as(tmp_path / "header_only.dcm")
    reason = _problem(index_paths([tmp_path / "header_only.dcm"]), "header_only.dcm")
    assert reason == "contains no image: no pixel data (CT Image Storage)"
    from radreview.studies.pixels import decode_dicom

    with pytest.raises(StudyLoadError, match=r"header_only\.dcm: contains no image: no pixel data \(CT Image Storage\)$"):
        decode_dicom(tmp_path / "header_only.dcm")
    data = hostile.testfile("CT_small.dcm").read_bytes()
    (tmp_path / "cut.dcm").write_bytes(data[:-5000])  # and a real cut still says so
    [entry] = index_paths([tmp_path / "cut.dcm"]).images()
    with pytest.raises(StudyLoadError, match=r"cut\.dcm: file is truncated: its pixel data needs 32768 bytes"):
        decode_image(entry)


# --- symlinks, FIFOs, devices, names ----------------------------------------------------------


@posix_only
def test_symlink_loops_are_named_and_the_rest_opens(tmp_path):
    folder = hostile.good_folder(tmp_path / "study")
    os.symlink("self.dcm", folder / "self.dcm")
    os.symlink("pong.dcm", folder / "ping.dcm")
    os.symlink("ping.dcm", folder / "pong.dcm")
    os.symlink(folder, folder / "loop_dir")  # a folder link back up: not followed
    index = index_paths([folder])
    for name in ("self.dcm", "ping.dcm", "pong.dcm"):
        assert _problem(index, name).startswith("symbolic link loop")
    _good_images_open(index)
    explicit = index_paths([folder / "ping.dcm", folder / "mr.dcm"])
    assert _problem(explicit, "ping.dcm").startswith("symbolic link loop")
    assert len(explicit.images()) == 1


@posix_only
@pytest.mark.timeout(60)
def test_fifo_and_device_named_dcm_never_block(tmp_path):
    folder = hostile.good_folder(tmp_path / "study")
    os.mkfifo(folder / "pipe.dcm")
    os.symlink("/dev/zero", folder / "zero.dcm")
    index = index_paths([folder])
    assert _problem(index, "pipe.dcm") == "not a regular file: it is a named pipe (FIFO)"
    assert _problem(index, "zero.dcm") == "not a regular file: it is a character device"
    _good_images_open(index)
    from radreview.cli import main

    assert main(["render", str(folder / "pipe.dcm"), "--out", str(tmp_path / "x.png")]) == 2


@posix_only
def test_file_names_with_invalid_utf8_bytes_open(tmp_path):
    folder = hostile.good_folder(tmp_path / "study")
    name = os.fsdecode(b"bad\xff\xfename.dcm")  # surrogate-escaped, as os.walk gives it
    shutil.copy(hostile.testfile("JPEG2000.dcm"), folder / name)
    index = index_paths([folder])
    entry = next(e for e in index.images() if e.path.name == name)
    assert decode_image(entry).shape == (1024, 256)
    _good_images_open(index)


# --- archives -------------------------------------------------------------------------------


def _leftover_folders() -> set[Path]:
    import tempfile

    return {p for p in Path(tempfile.gettempdir()).glob(f"{PREFIX}{os.getpid()}-*")}


def test_zip_bomb_is_refused_fast_and_leaves_nothing_behind(tmp_path):
    before = _leftover_folders()
    bomb = hostile.zip_bomb(tmp_path / "bomb.zip")
    assert bomb.stat().st_size < 3_000_000
    with zipfile.ZipFile(bomb) as handle:
        assert handle.infolist()[0].file_size == 2 * hostile.GIB  # what it honestly declares
    good = tmp_path / "good.zip"
    with zipfile.ZipFile(good, "w", zipfile.ZIP_DEFLATED) as handle:
        handle.write(hostile.testfile("MR_small.dcm"), "study/mr.dcm")
    index = index_paths([bomb, good])
    reason = _problem(index, "bomb.zip")
    assert "bomb.dcm inflates more than 200 times its compressed size" in reason and "max_zip_ratio" in reason
    assert len(index.images()) == 1
    assert _leftover_folders() - before == {index.images()[0].path.parents[1]}  # only the good one


def test_zip_total_and_member_limits(tmp_path):
    archive = tmp_path / "noise.zip"
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as handle:
        for i in range(3):
            handle.writestr(f"n{i}.dcm", np.random.default_rng(i).bytes(400_000))
    before = _leftover_folders()
    set_limits(max_zip_bytes=1_000_000)
    assert "max_zip_bytes" in _problem(index_paths([archive]), "noise.zip")
    set_limits(Limits(max_zip_members=2))
    assert "3 files" in _problem(index_paths([archive]), "noise.zip")
    assert _leftover_folders() == before


@posix_only
def test_unpacked_folder_is_removed_on_sigterm(tmp_path):
    archive = tmp_path / "study.zip"
    with zipfile.ZipFile(archive, "w") as handle:
        handle.write(hostile.testfile("MR_small.dcm"), "mr.dcm")
    code = ("import sys, time; from radreview.studies.archives import remove_on_signals; "
            "from radreview.studies import index_paths; remove_on_signals(); "
            "print(index_paths([sys.argv[1]]).images()[0].path.parent, flush=True); time.sleep(60)")
    child = subprocess.Popen([sys.executable, "-c", code, str(archive)], stdout=subprocess.PIPE, text=True,
                             env={**os.environ, "PYTHONPATH": str(hostile.REPO_ROOT)})
    folder = Path(child.stdout.readline().strip())
    assert folder.name.startswith(PREFIX) and (folder / "mr.dcm").exists()
    child.send_signal(signal.SIGTERM)
    assert child.wait(30) == -signal.SIGTERM  # it still ends as SIGTERM says
    assert not folder.exists()


@posix_only
def test_folders_of_killed_processes_are_removed_by_the_next_unpack(tmp_path):
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    pid = int(dead.stdout)
    stale = tmp_path / f"{PREFIX}{pid}-abcd"
    (stale / "x").mkdir(parents=True)
    mine = tmp_path / f"{PREFIX}{os.getpid()}-efgh"
    mine.mkdir()
    assert remove_stale_folders(tmp_path) == [stale]
    assert not stale.exists() and mine.exists()


# --- DICOMDIR --------------------------------------------------------------------------------


def _fileset(folder: Path) -> Path:
    from pydicom.fileset import FileSet

    fileset = FileSet()
    for name in ("MR_small.dcm", "CT_small.dcm"):
        fileset.add(pydicom.dcmread(hostile.testfile(name)))
    fileset.write(folder)
    return folder / "DICOMDIR"


def test_dicomdir_references_cannot_leave_its_folder(tmp_path):
    outside = hostile.good_folder(tmp_path / "outside")
    dicomdir = _fileset(tmp_path / "media" / "disc")
    ds = pydicom.dcmread(dicomdir)
    images = [r for r in ds.DirectoryRecordSequence if "ReferencedFileID" in r]
    images[0].ReferencedFileID = ["..", "..", "outside", "hip.dcm"]
    images[1].ReferencedFileID = str(outside / "ct.dcm")  # an absolute path
    ds.save_as(dicomdir)
    index = index_paths([dicomdir])
    reasons = [p.reason for p in index.problems if p.path == dicomdir]
    assert any("'../../outside/hip.dcm'" in r and "'..' component" in r for r in reasons), reasons
    assert any(str(outside / "ct.dcm") in r and "path separator" in r for r in reasons), reasons
    assert not index.images()  # neither outside file was opened


@posix_only
def test_dicomdir_link_out_of_its_folder_is_refused(tmp_path):
    hostile.good_folder(tmp_path / "outside")
    dicomdir = _fileset(tmp_path / "disc")
    ds = pydicom.dcmread(dicomdir)
    record = next(r for r in ds.DirectoryRecordSequence if "ReferencedFileID" in r)
    os.symlink(tmp_path / "outside" / "hip.dcm", dicomdir.parent / "LINK")
    record.ReferencedFileID = "LINK"
    ds.save_as(dicomdir)
    index = index_paths([dicomdir])
    assert any("link leading outside" in p.reason for p in index.problems)
    assert len(index.images()) == 1  # the other record still opens


# --- limits themselves -----------------------------------------------------------------------


def test_limits_from_environment_and_options():
    assert parse_size("512M") == 512 << 20 and parse_size("2G") == 2 << 30 and parse_size("1000") == 1000
    env = {"RADREVIEW_LIMIT_MAX_FRAME_PIXELS": "100M", "RADREVIEW_LIMIT_MAX_ZIP_RATIO": "50"}
    read = Limits.from_environment(env)
    assert read.max_frame_pixels == 100 << 20 and read.max_zip_ratio == 50
    assert read.max_raster_pixels == Limits().max_raster_pixels
    for bad in ({"RADREVIEW_LIMIT_MAX_FRAME_PIXELS": "lots"}, {"RADREVIEW_LIMIT_MAX_ZIP_RATIO": "0"}):
        with pytest.raises(LimitError, match="RADREVIEW_LIMIT_"):
            Limits.from_environment(bad)
    with pytest.raises(LimitError, match="unknown limit 'max_nothing'"):
        Limits().with_text({"max_nothing": "1"})
    set_limits(max_frame_pixels=10)
    assert limits().max_frame_pixels == 10


def test_limit_option_of_the_command(tmp_path, capsys):
    from radreview.cli import main

    source = hostile.testfile("MR_small.dcm")
    assert main(["render", str(source), "--out", str(tmp_path / "a.png"), "--limit", "max_frame_pixels=1000"]) == 2
    assert "max_frame_pixels = 1000" in capsys.readouterr().err
    set_limits(Limits())
    assert main(["--limit", "max_frame_pixels=4k", "render", str(source), "--out", str(tmp_path / "b.png")]) == 0
    with pytest.raises(SystemExit):
        main(["render", str(source), "--out", str(tmp_path / "c.png"), "--limit", "max_frame_pixels"])
    assert "expected NAME=VALUE" in capsys.readouterr().err

