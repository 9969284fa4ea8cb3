"""Indexing: grouping, DICOMDIR, raster files, progress/cancel, and every kind of bad input."""

from __future__ import annotations

import logging
import os
import shutil
from pathlib import Path

import numpy as np
import pydicom
import pydicom.encaps
import pytest
from PIL import Image
from pydicom.data import get_testdata_file
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

from radreview.studies import (
    StudyLoadError,
    decode_image,
    header_attributes,
    index_paths,
    key_attributes,
    render_display,
)

DICOMDIR_TESTS = Path(get_testdata_file("DICOMDIR")).parent


def _testfile(name: str) -> Path:
    return Path(get_testdata_file(name))


def _fracatlas_jpegs(fracatlas_dir: Path, n: int) -> list[Path]:
    return sorted((fracatlas_dir / "images" / "Non_fractured").glob("*.jpg"))[:n]


@pytest.fixture
def good_folder(tmp_path: Path) -> Path:
    folder = tmp_path / "good"
    folder.mkdir()
    shutil.copy(_testfile("MR_small.dcm"), folder / "mr.dcm")
    shutil.copy(_testfile("CT_small.dcm"), folder / "ct")  # no extension, Part 10 preamble
    return folder


# --- grouping -----------------------------------------------------------------------------


def test_dicomdir_groups_patient_study_series_image_by_uid():
    index = index_paths([DICOMDIR_TESTS / "DICOMDIR"])
    assert not index.problems
    assert [p.name for p in index.patients] == ["Doe Archibald", "Doe Peter"]
    peter = index.patients[1]
    assert len(peter.studies) == 4 and len(index.images()) == 31
    for study in index.studies():
        numbers = [s.number for s in study.series]
        assert numbers == sorted(numbers)
        for series in study.series:
            assert {i.series_uid for i in series.images} == {series.uid}
            instances = [i.instance_number for i in series.images]
            assert instances == sorted(instances)


def test_a_folder_scan_finds_the_same_images_as_its_dicomdir():
    by_dicomdir = {i.sop_instance_uid for i in index_paths([DICOMDIR_TESTS / "DICOMDIR"]).images()}
    scan = index_paths([DICOMDIR_TESTS / "77654033", DICOMDIR_TESTS / "98892001", DICOMDIR_TESTS / "98892003"])
    assert {i.sop_instance_uid for i in scan.images()} == by_dicomdir


def test_indexing_reads_headers_only(monkeypatch, good_folder):
    """Indexing must never decode pixels (that happens on demand)."""
    import pydicom.pixels

    def forbidden(*args, **kwargs):
        raise AssertionError("pixels decoded while indexing")

    monkeypatch.setattr(pydicom.pixels, "pixel_array", forbidden)
    index = index_paths([good_folder])
    assert len(index.images()) == 2 and not index.problems


def test_entry_fields_and_header_panels(pydicom_data_file):
    path = pydicom_data_file("RG1_UNCR.dcm")
    [entry] = index_paths([path]).images()
    assert (entry.rows, entry.columns, entry.modality, entry.photometric) == (1955, 1841, "CR", "MONOCHROME1")
    assert entry.body_part == "CHEST" and entry.pixel_spacing is None  # its Pixel Spacing is 0\0
    summary = key_attributes(entry)
    assert summary["Modality"] == "CR" and summary["Size"] == "1841 x 1955"
    assert "unknown" in summary["Pixel spacing"]
    rows = header_attributes(entry)
    tags = {tag for tag, _, _ in rows}
    assert "(0028,0004)" in tags and "(0002,0010)" in tags and "(7FE0,0010)" not in tags
    assert ("(0028,1050)", "WindowCenter", "15000") in rows


def test_header_summary_takes_the_series_laterality_when_the_image_has_none(pydicom_data_file):
    """RG3 stores Laterality (0020,0060) = R at series level only: the side is still in the summary."""
    [entry] = index_paths([pydicom_data_file("RG3_UNCR.dcm")]).images()
    assert key_attributes(entry)["Laterality"] == "R"


def test_imager_pixel_spacing_is_used_when_pixel_spacing_is_absent(tmp_path, pydicom_data_file):
    ds = pydicom.dcmread(pydicom_data_file("RG3_UNCR.dcm"))
    ds.ImagerPixelSpacing = [0.1, 0.12]
    ds.save_as(tmp_path / "ips.dcm")
    image = decode_image(index_paths([tmp_path / "ips.dcm"]).images()[0])
    assert image.pixel_spacing == (0.1, 0.12) and image.spacing_source == "Imager Pixel Spacing"
    ds.PixelSpacing = [0.2, 0.2]
    ds.save_as(tmp_path / "ps.dcm")
    entry = index_paths([tmp_path / "ps.dcm"]).images()[0]
    assert entry.pixel_spacing == (0.2, 0.2) and entry.spacing_source == "Pixel Spacing"


def test_raster_files_become_single_image_series(fracatlas_dir, tmp_path):
    for jpeg in _fracatlas_jpegs(fracatlas_dir, 3):
        shutil.copy(jpeg, tmp_path / jpeg.name)
    Image.fromarray((np.arange(64 * 64).reshape(64, 64) * 16).astype(np.uint16)).save(tmp_path / "deep.png")
    index = index_paths([tmp_path])
    assert not index.problems
    [patient] = index.patients
    assert patient.name == tmp_path.name
    assert len(patient.studies) == 4 and all(len(s.series) == 1 for s in patient.studies)
    entries = index.images()
    assert {e.kind for e in entries} == {"raster"}
    jpeg = next(e for e in entries if e.path.suffix == ".jpg")
    image = decode_image(jpeg)
    np.testing.assert_array_equal(render_display(image), np.asarray(Image.open(jpeg.path).convert("L")))
    deep = decode_image(next(e for e in entries if e.path.suffix == ".png"))
    assert deep.bits_stored == 16 and render_display(deep).max() == 255


def test_progress_and_cancel(good_folder):
    calls: list[tuple[int, int]] = []
    index_paths([good_folder], progress=lambda done, total: calls.append((done, total)))
    assert calls == [(1, 2), (2, 2)]
    cancelled = index_paths([good_folder], cancel=lambda: True)
    assert cancelled.cancelled and not cancelled.images()
    seen: list[int] = []
    partial = index_paths([good_folder], progress=lambda d, t: seen.append(d), cancel=lambda: len(seen) >= 1)
    assert partial.cancelled and len(partial.images()) == 1


def test_the_same_file_opened_twice_is_listed_once(good_folder):
    index = index_paths([good_folder, good_folder / "mr.dcm"])
    assert len(index.images()) == 2


# --- bad input: each gives a problem naming the file and the reason; the rest still opens ----


def _only_problem(index, name: str):
    matching = [p for p in index.problems if p.path.name == name]
    assert len(matching) == 1, index.problems
    return matching[0]


def test_truncated_files(good_folder, caplog):
    data = _testfile("MR_small.dcm").read_bytes()
    (good_folder / "cut_pixels.dcm").write_bytes(data[: len(data) - 4000])
    (good_folder / "cut_header.dcm").write_bytes(data[:300])
    with caplog.at_level(logging.WARNING, logger="radreview.studies"):
        index = index_paths([good_folder])
    assert len(index.images()) == 2  # the good files still open
    assert "truncated" in _only_problem(index, "cut_pixels.dcm").reason
    assert _only_problem(index, "cut_header.dcm").reason
    assert "cut_pixels.dcm" in caplog.text  # also in the log


def test_slightly_truncated_pixel_data_fails_at_decoding(tmp_path):
    data = _testfile("MR_small.dcm").read_bytes()
    (tmp_path / "cut_end.dcm").write_bytes(data[: len(data) - 1000])  # still longer than the pixels
    [entry] = index_paths([tmp_path]).images()
    with pytest.raises(StudyLoadError, match=r"cut_end\.dcm: file is truncated: its pixel data needs 8192 bytes"):
        decode_image(entry)


@pytest.mark.filterwarnings("ignore:End of file reached before delimiter")  # pydicom's own note
def test_truncated_pixel_data_in_a_compressed_file_fails_at_decoding(tmp_path):
    data = _testfile("MR_small_RLE.dcm").read_bytes()
    (tmp_path / "cut_rle.dcm").write_bytes(data[: len(data) - 3000])
    [entry] = index_paths([tmp_path]).images()  # the header is intact, so it is listed
    with pytest.raises(StudyLoadError, match=r"cut_rle\.dcm: file is truncated"):
        decode_image(entry)


def test_dicom_without_pixel_data(good_folder):
    shutil.copy(_testfile("test-SR.dcm"), good_folder / "report.dcm")
    state = Dataset()
    state.file_meta = FileMetaDataset()
    state.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    state.file_meta.MediaStorageSOPClassUID = pydicom.uid.GrayscaleSoftcopyPresentationStateStorage
    state.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    state.SOPClassUID = pydicom.uid.GrayscaleSoftcopyPresentationStateStorage
    state.SOPInstanceUID = state.file_meta.MediaStorageSOPInstanceUID
    state.Modality = "PR"
    state.save_as(good_folder / "state.dcm", enforce_file_format=True)
    index = index_paths([good_folder])
    assert len(index.images()) == 2
    assert "no pixel data" in _only_problem(index, "report.dcm").reason
    assert "SR" in _only_problem(index, "report.dcm").reason
    assert "Presentation State" in _only_problem(index, "state.dcm").reason


def test_unsupported_transfer_syntax(good_folder):
    ds = pydicom.dcmread(_testfile("MR_small.dcm"))
    ds.file_meta.TransferSyntaxUID = "1.2.840.10008.1.2.4.100"  # MPEG2: not for radiographs
    ds.PixelData = pydicom.encaps.encapsulate([ds.PixelData])
    ds["PixelData"].VR = "OB"
    ds.save_as(good_folder / "video.dcm")
    index = index_paths([good_folder])
    assert len(index.images()) == 2
    reason = _only_problem(index, "video.dcm").reason
    assert "unsupported transfer syntax" in reason and "MPEG2" in reason


def test_non_dicom_file_with_a_dcm_name(good_folder):
    (good_folder / "notes.dcm").write_text("Patient notes, not an image.\n" * 20)
    (good_folder / "README").write_text("a file that is not DICOM and has no extension")
    index = index_paths([good_folder])
    assert len(index.images()) == 2
    assert "not a DICOM file" in _only_problem(index, "notes.dcm").reason
    assert not [p for p in index.problems if p.path.name == "README"]  # unknown files are skipped quietly
    with pytest.raises(StudyLoadError, match="notes.dcm: not a DICOM file"):
        from radreview.studies.pixels import decode_dicom

        decode_dicom(good_folder / "notes.dcm")


def test_corrupt_jpegs(good_folder, fracatlas_dir):
    (good_folder / "garbage.jpg").write_bytes(os.urandom(5000))
    jpeg = _fracatlas_jpegs(fracatlas_dir, 1)[0].read_bytes()
    (good_folder / "cut.jpg").write_bytes(jpeg[: len(jpeg) // 3])
    index = index_paths([good_folder])
    assert "garbage.jpg" in str(_only_problem(index, "garbage.jpg"))
    # A JPEG cut short has a good header: it is listed, and decoding it fails with a reason.
    cut = next(e for e in index.images() if e.path.name == "cut.jpg")
    with pytest.raises(StudyLoadError, match=r"cut\.jpg: damaged image data"):
        decode_image(cut)
    assert len([e for e in index.images() if e.kind == "dicom"]) == 2


def test_empty_folder_and_missing_path(tmp_path):
    (tmp_path / "empty").mkdir()
    index = index_paths([tmp_path / "empty", tmp_path / "nowhere"])
    assert not index.images()
    assert "no DICOM or image files" in _only_problem(index, "empty").reason
    assert _only_problem(index, "nowhere").reason == "not found"


def test_unreadable_file_reported_via_the_os_error(good_folder, monkeypatch):
    """Tests run as root, where chmod 000 still reads: the OS's PermissionError is injected."""
    locked = good_folder / "locked.dcm"
    shutil.copy(_testfile("MR_small.dcm"), locked)
    Image.fromarray(np.zeros((4, 4), dtype=np.uint8)).save(good_folder / "locked.png")
    real_open = os.open  # files are opened with os.open (non-blocking, then checked: fileaccess.py)

    def open_denying(file, *args, **kwargs):
        if Path(str(file)).stem == "locked":
            raise PermissionError(13, "Permission denied", str(file))
        return real_open(file, *args, **kwargs)

    monkeypatch.setattr(os, "open", open_denying)
    index = index_paths([good_folder])
    assert len(index.images()) == 2
    assert _only_problem(index, "locked.dcm").reason == "permission denied"
    assert _only_problem(index, "locked.png").reason == "permission denied"


def test_unreadable_subfolder_reported_via_the_os_error(good_folder, monkeypatch):
    (good_folder / "private").mkdir()
    shutil.copy(_testfile("MR_small.dcm"), good_folder / "private" / "x.dcm")
    real_scandir = os.scandir

    def scandir_denying(path="."):
        if Path(path).name == "private":
            raise PermissionError(13, "Permission denied", str(path))
        return real_scandir(path)

    monkeypatch.setattr(os, "scandir", scandir_denying)
    index = index_paths([good_folder])
    assert len(index.images()) == 2
    assert _only_problem(index, "private").reason == "permission denied"


@pytest.mark.skipif(hasattr(os, "geteuid") and os.geteuid() == 0, reason="root reads files whatever their mode")
def test_unreadable_file_for_real(good_folder):
    locked = good_folder / "locked.dcm"
    shutil.copy(_testfile("MR_small.dcm"), locked)
    locked.chmod(0)
    try:
        index = index_paths([good_folder])
    finally:
        locked.chmod(0o644)
    assert _only_problem(index, "locked.dcm").reason == "permission denied"


def _write_fileset(folder: Path, count: int) -> Path:
    """A DICOMDIR with ``count`` MR images, written by pydicom's FileSet."""
    from pydicom.fileset import FileSet

    fileset = FileSet()
    template = pydicom.dcmread(_testfile("MR_small.dcm"))
    for number in range(1, count + 1):
        ds = template.copy()
        ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
        ds.InstanceNumber = number
        fileset.add(ds)
    fileset.write(folder)
    return folder / "DICOMDIR"


def test_dicomdir_referencing_missing_files(tmp_path):
    dicomdir = _write_fileset(tmp_path / "media", 5)
    assert len(index_paths([dicomdir]).images()) == 5
    files = sorted(p for p in dicomdir.parent.rglob("*") if p.is_file() and p.name != "DICOMDIR")
    for path in files[:2]:
        path.unlink()
    index = index_paths([dicomdir])
    missing = [p for p in index.problems if "missing" in p.reason]
    assert sorted(p.path.name for p in missing) == sorted(p.name for p in files[:2])
    assert all(str(dicomdir) in p.reason for p in missing)
    assert len(index.images()) == 3  # the rest still opens


def test_header_only_files_in_a_dicomdir_are_reported():
    """pydicom's TINY_ALPHA file-set holds CT headers without pixel data."""
    index = index_paths([DICOMDIR_TESTS / "TINY_ALPHA" / "DICOMDIR"])
    assert not index.images()
    assert index.problems and all("no pixel data" in p.reason for p in index.problems)


def test_damaged_dicomdir(tmp_path):
    (tmp_path / "DICOMDIR").write_bytes(b"\0" * 50)
    index = index_paths([tmp_path / "DICOMDIR"])
    assert not index.images() and _only_problem(index, "DICOMDIR").reason


def test_tiff_files_grey_deep_and_multipage(tmp_path):
    grey16 = (np.arange(32 * 48, dtype=np.uint16).reshape(32, 48) * 40)
    Image.fromarray(grey16).save(tmp_path / "deep.tif")
    pages = [Image.fromarray(np.full((20, 30), v, dtype=np.uint8)) for v in (10, 200)]
    pages[0].save(tmp_path / "pages.tiff", save_all=True, append_images=pages[1:])
    index = index_paths([tmp_path])
    assert not index.problems
    deep = next(e for e in index.images() if e.path.name == "deep.tif")
    image = decode_image(deep)
    np.testing.assert_array_equal(image.pixels, grey16.astype(np.float32))
    assert render_display(image)[0, 0] == 0 and render_display(image)[-1, -1] == 255
    multi = next(e for e in index.images() if e.path.name == "pages.tiff")
    assert multi.number_of_frames == 2
    assert decode_image(multi, 1).pixels[0, 0] == 200
    with pytest.raises(StudyLoadError, match="frame 2 does not exist"):
        decode_image(multi, 2)
    assert key_attributes(multi)["Format"] == "TIFF"
    assert ("", "Format", "TIFF") in header_attributes(multi)


def test_colour_images_stay_colour_and_invert(tmp_path):
    rgb = np.zeros((10, 12, 3), dtype=np.uint8)
    rgb[..., 0] = 200
    rgb[..., 2] = np.arange(12, dtype=np.uint8) * 20
    Image.fromarray(rgb).save(tmp_path / "colour.png")
    [entry] = index_paths([tmp_path]).images()
    image = decode_image(entry)
    assert image.is_color and image.photometric == "RGB"
    np.testing.assert_array_equal(render_display(image), rgb)
    np.testing.assert_array_equal(render_display(image, invert=True), 255 - rgb)


def test_sequences_are_listed_in_the_header_view(tmp_path):
    ds = pydicom.dcmread(_testfile("MR_small.dcm"))
    item = Dataset()
    item.ReferencedSOPClassUID = ds.SOPClassUID
    item.ReferencedSOPInstanceUID = "1.2.3.4"
    ds.ReferencedImageSequence = [item]
    ds.save_as(tmp_path / "seq.dcm")
    [entry] = index_paths([tmp_path / "seq.dcm"]).images()
    rows = header_attributes(entry)
    assert ("(0008,1140)", "ReferencedImageSequence", "sequence of 1 item(s)") in rows
    assert ("(0008,1155)", ">ReferencedSOPInstanceUID", "1.2.3.4") in rows
    top_level = [r for r in rows if not r[1].startswith(">") and not r[0].startswith("(0002")]
    header = pydicom.dcmread(tmp_path / "seq.dcm", stop_before_pixels=True)
    assert len(top_level) == len(header)


def test_an_unexpected_failure_in_one_file_is_a_problem_not_a_crash(good_folder, monkeypatch):
    """The safety net: any exception while indexing one file becomes that file's problem."""
    import radreview.studies.index as index_module

    Image.fromarray(np.zeros((4, 4), dtype=np.uint8)).save(good_folder / "odd.png")

    def exploding(path):
        raise RuntimeError("decoder library crashed")

    monkeypatch.setattr(index_module, "read_raster_header", exploding)
    index = index_paths([good_folder])
    assert len(index.images()) == 2
    assert "decoder library crashed" in _only_problem(index, "odd.png").reason


def test_a_bare_path_is_one_path(good_folder):
    assert len(index_paths(good_folder).images()) == 2  # type: ignore[arg-type]
    assert len(index_paths(str(good_folder / "mr.dcm")).images()) == 1  # type: ignore[arg-type]


def test_names_in_every_character_set_match_pydicom(tmp_path):
    """The fast header path decodes names like pydicom does, in every character set it ships."""
    from pydicom.data import get_charset_files

    files = [Path(p) for p in get_charset_files("*.dcm")]
    assert len(files) > 10
    names = 0
    for path in files:
        ds = pydicom.dcmread(path, stop_before_pixels=True)
        # A tiny image of our own, so that every sample indexes (some have no pixel data).
        ds.Rows, ds.Columns, ds.SamplesPerPixel, ds.BitsAllocated, ds.BitsStored = 1, 2, 1, 8, 8
        ds.PhotometricInterpretation = "MONOCHROME2"
        ds.PixelData = b"\0\0"
        ds["PixelData"].VR = "OB"
        ds.PatientID = ds.get("PatientID") or "X"
        target = tmp_path / path.name
        ds.save_as(target)
        index = index_paths([target])
        assert not index.problems, index.problems
        [patient] = index.patients
        expected = str(ds.get("PatientName", "") or "").replace("^", " ").strip()
        assert patient.name == expected, path.name
        names += bool(expected)
    assert names > 10


@pytest.mark.filterwarnings("ignore:Expected implicit VR")  # pydicom probing notes.dcm
def test_zip_archives_open_like_folders(good_folder, tmp_path):
    import zipfile

    archive = tmp_path / "study.zip"
    with zipfile.ZipFile(archive, "w") as handle:
        handle.write(good_folder / "mr.dcm", "PATIENT/STUDY/mr.dcm")
        handle.write(good_folder / "ct", "PATIENT/STUDY/ct")
        handle.writestr("../outside.dcm", _testfile("MR_small.dcm").read_bytes())  # a zip-slip attempt
        handle.writestr("notes.dcm", "not DICOM")
    index = index_paths([archive])
    assert len(index.images()) == 2  # the copy that tried to climb out is mr.dcm's instance again
    ct = next(e.path for e in index.images() if e.path.name == "ct")
    unpacked = ct.parents[2]
    assert unpacked.name.startswith("radreview-zip-")
    assert all(unpacked in e.path.parents for e in index.images())
    assert (unpacked / "outside.dcm").exists() and not (unpacked.parent / "outside.dcm").exists()
    assert "not a DICOM file" in _only_problem(index, "notes.dcm").reason
    decode_image(index.images()[0])  # the unpacked files stay while the process runs

    broken = tmp_path / "broken.zip"
    broken.write_bytes(archive.read_bytes()[:100])
    assert "not a readable zip archive" in _only_problem(index_paths([broken]), "broken.zip").reason


def test_a_folder_of_other_files_is_reported(tmp_path, good_folder):
    other = tmp_path / "other"
    other.mkdir()
    (other / "LICENSE").write_text("not an image")
    (other / "data.bin").write_bytes(os.urandom(500))
    index = index_paths([other, good_folder])
    assert len(index.images()) == 2
    assert "no DICOM or image files" in _only_problem(index, "other").reason
    assert not [p for p in index.problems if p.path.name == "good"]
