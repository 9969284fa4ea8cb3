"""Build the demo studies in ``resources/demo/`` (deterministic: same inputs, same bytes).

Sources:
- FracAtlas radiographs (CC BY 4.0, see resources/demo/README.md) from ``../shared/data/fracatlas``:
  a few converted to DICOM (Secondary Capture, Modality DX, invented clearly fake patients),
  a few kept as JPEG;
- ``RG3_UNCR.dcm`` from pydicom-data (MIT), re-encoded losslessly as RLE to keep the repo small.

Usage: ``.venv/bin/python scripts/make_demo_studies.py [--fracatlas DIR] [--out DIR]``
"""

from __future__ import annotations

import argparse
import csv
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pydicom
from PIL import Image
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.encaps import encapsulate
from pydicom.fileset import FileSet
from pydicom.uid import (
    ExplicitVRLittleEndian,
    JPEGBaseline8Bit,
    RLELossless,
    SecondaryCaptureImageStorage,
    generate_uid,
)

REPO = Path(__file__).resolve().parents[1]
DEFAULT_FRACATLAS = REPO.parent / "shared" / "data" / "fracatlas"
DEFAULT_OUT = REPO / "resources" / "demo"
STUDY_DATE = "20240102"  # fixed, so that the script is deterministic
ATTRIBUTION = (
    "FracAtlas (Abedeen et al., Scientific Data 10, 521 (2023), doi:10.1038/s41597-023-02432-4; "
    "data doi:10.6084/m9.figshare.22363012), CC BY 4.0"
)


@dataclass(frozen=True)
class DemoImage:
    image_id: str  # FracAtlas file name
    view: str  # View Position written to the header
    encoding: str  # "jpeg" (the original JPEG bytes encapsulated) or "native" (uncompressed)


@dataclass(frozen=True)
class DemoStudy:
    folder: str
    patient_name: str  # invented, clearly fake
    patient_id: str
    description: str
    images: tuple[DemoImage, ...]
    dicomdir: bool = False  # write the folder as a DICOM File-set with a DICOMDIR


DEMO_STUDIES = (
    DemoStudy("DEMO_HAND", "DEMO^HAND", "DEMO-0001", "DEMO hand and wrist", (DemoImage("IMG0000019.jpg", "PA", "native"),)),
    DemoStudy(
        "DEMO_LEG", "DEMO^LEG", "DEMO-0002", "DEMO tibia and fibula, two views",
        (DemoImage("IMG0002342.jpg", "AP", "jpeg"), DemoImage("IMG0002343.jpg", "LATERAL", "jpeg")),
        dicomdir=True,
    ),
    DemoStudy("DEMO_HIP", "DEMO^HIP", "DEMO-0003", "DEMO pelvis and hips", (DemoImage("IMG0000097.jpg", "AP", "jpeg"),)),
    DemoStudy(
        "DEMO_SHOULDER", "DEMO^SHOULDER", "DEMO-0004", "DEMO shoulder", (DemoImage("IMG0000040.jpg", "AP", "jpeg"),)
    ),
)
# Kept as plain JPEG files: a fractured hand, a leg with hardware, a normal shoulder.
KEPT_AS_JPEG = ("IMG0000025.jpg", "IMG0000092.jpg", "IMG0000065.jpg")
BODY_PARTS = (("hand", "HAND"), ("leg", "LEG"), ("hip", "HIP"), ("shoulder", "SHOULDER"))


def uid(*parts: str) -> str:
    """A UID derived from its parts (pydicom's root + a hash), so reruns give the same UIDs."""
    return generate_uid(entropy_srcs=["radreview-demo", *parts])


def read_labels(fracatlas: Path) -> dict[str, dict[str, str]]:
    with open(fracatlas / "dataset.csv", newline="") as handle:
        return {row["image_id"]: row for row in csv.DictReader(handle)}


def source_path(fracatlas: Path, image_id: str) -> Path:
    for folder in ("Fractured", "Non_fractured"):
        path = fracatlas / "images" / folder / image_id
        if path.exists():
            return path
    raise FileNotFoundError(f"{image_id} is not in {fracatlas / 'images'}")


def body_part(labels: dict[str, str]) -> str:
    parts = [name for flag, name in BODY_PARTS if labels.get(flag) == "1"]
    return parts[0] if len(parts) == 1 and labels.get("mixed") != "1" else "EXTREMITY"


def make_dataset(study: DemoStudy, image: DemoImage, number: int, fracatlas: Path, labels: dict[str, str]) -> Dataset:
    source = source_path(fracatlas, image.image_id)
    jpeg = source.read_bytes()
    with Image.open(source) as opened:
        if opened.mode != "L" or opened.info.get("progressive") or opened.info.get("progression"):
            raise ValueError(f"{source}: demo DICOMs need 8-bit grey baseline JPEGs")
        pixels = np.asarray(opened, dtype=np.uint8)
    study_uid = uid(study.folder, "study")
    series_uid = uid(study.folder, "series")
    instance_uid = uid(study.folder, image.image_id)

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = SecondaryCaptureImageStorage
    meta.MediaStorageSOPInstanceUID = instance_uid
    meta.TransferSyntaxUID = JPEGBaseline8Bit if image.encoding == "jpeg" else ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SpecificCharacterSet = "ISO_IR 100"
    ds.ImageType = ["DERIVED", "SECONDARY"]
    ds.SOPClassUID = SecondaryCaptureImageStorage
    ds.SOPInstanceUID = instance_uid
    ds.StudyDate = ds.SeriesDate = ds.ContentDate = STUDY_DATE
    ds.StudyTime = ds.SeriesTime = ds.ContentTime = "120000"
    ds.AccessionNumber = study.patient_id.replace("-", "")
    ds.Modality = "DX"
    ds.ConversionType = "WSD"
    ds.Manufacturer = "radreview demo"
    ds.ReferringPhysicianName = ""
    ds.StudyDescription = study.description
    ds.SeriesDescription = f"{body_part(labels)} radiographs"
    ds.PatientName = study.patient_name
    ds.PatientID = study.patient_id
    ds.PatientBirthDate = ""
    ds.PatientSex = ""
    ds.BodyPartExamined = body_part(labels)
    ds.ViewPosition = image.view
    ds.StudyInstanceUID = study_uid
    ds.SeriesInstanceUID = series_uid
    ds.StudyID = study.patient_id
    ds.SeriesNumber = 1
    ds.InstanceNumber = number
    ds.PatientOrientation = ""
    fractured = "fractured" if labels.get("fractured") == "1" else "not fractured"
    ds.ImageComments = f"FracAtlas {image.image_id} ({fractured}). Demo data, not a real patient."
    ds.DerivationDescription = f"Converted from {image.image_id} of {ATTRIBUTION}"
    ds.LossyImageCompression = "01"  # the source was a JPEG
    ds.LossyImageCompressionMethod = "ISO_10918_1"
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.Rows, ds.Columns = pixels.shape
    ds.BitsAllocated = 8
    ds.BitsStored = 8
    ds.HighBit = 7
    ds.PixelRepresentation = 0
    ds.RescaleIntercept = "0"
    ds.RescaleSlope = "1"
    ds.RescaleType = "US"
    # First preset shows the JPEG as it was; the second stretches the body's 1st-99th percentile.
    low, high = (int(v) for v in np.percentile(pixels[pixels > 8], [1, 99]))
    ds.WindowCenter = ["128", f"{(low + high + 1) / 2:g}"]
    ds.WindowWidth = ["256", f"{high - low + 1:g}"]
    ds.WindowCenterWidthExplanation = ["FULL", "CONTRAST"]
    ds.PresentationLUTShape = "IDENTITY"
    if image.encoding == "jpeg":
        ds.PixelData = encapsulate([jpeg])
        ds["PixelData"].VR = "OB"
        ds.LossyImageCompressionRatio = f"{pixels.size / len(jpeg):.2f}"
    else:
        ds.PixelData = pixels.tobytes()
    return ds


def write_study(study: DemoStudy, out: Path, fracatlas: Path, labels: dict[str, dict[str, str]]) -> list[Path]:
    folder = out / study.folder
    datasets = [
        make_dataset(study, image, number, fracatlas, labels[image.image_id])
        for number, image in enumerate(study.images, start=1)
    ]
    if study.dicomdir:
        fileset = FileSet()
        fileset.ID = study.folder[:16]
        fileset.UID = uid(study.folder, "file-set")
        for ds in datasets:
            fileset.add(ds)
        fileset.write(folder)
        return sorted(p for p in folder.rglob("*") if p.is_file())
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for image, ds in zip(study.images, datasets):
        path = folder / image.image_id.replace(".jpg", ".dcm")
        ds.save_as(path, enforce_file_format=True)
        written.append(path)
    return written


def write_rg3(out: Path) -> Path:
    """pydicom-data's RG3_UNCR.dcm (CR, MONOCHROME1, 1760x1760) re-encoded as RLE Lossless."""
    from pydicom.data import get_testdata_file

    source = get_testdata_file("RG3_UNCR.dcm")
    if source is None:
        raise FileNotFoundError("RG3_UNCR.dcm: install pydicom-data (pip install pydicom-data)")
    ds = pydicom.dcmread(source)
    # Lossless re-encoding keeps the SOP Instance UID (PS3.5 8.2: same instance, other syntax).
    ds.compress(RLELossless, encoding_plugin="pydicom", generate_instance_uid=False)
    folder = out / "pydicom-data"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "RG3_RLE.dcm"
    ds.save_as(path, enforce_file_format=True)
    return path


def build(fracatlas: Path, out: Path) -> list[Path]:
    labels = read_labels(fracatlas)
    for child in (out / s.folder for s in DEMO_STUDIES):
        if child.exists():
            shutil.rmtree(child)
    written: list[Path] = []
    for study in DEMO_STUDIES:
        written += write_study(study, out, fracatlas, labels)
    jpeg_folder = out / "jpeg"
    jpeg_folder.mkdir(parents=True, exist_ok=True)
    for image_id in KEPT_AS_JPEG:
        target = jpeg_folder / image_id
        shutil.copyfile(source_path(fracatlas, image_id), target)
        written.append(target)
    written.append(write_rg3(out))
    return written


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--fracatlas", type=Path, default=DEFAULT_FRACATLAS)
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = parser.parse_args()
    written = build(args.fracatlas, args.out)
    total = sum(p.stat().st_size for p in written)
    for path in written:
        print(f"{path.stat().st_size:>9,}  {path.relative_to(args.out)}")
    print(f"{total:>9,}  bytes in {len(written)} files under {args.out}")


if __name__ == "__main__":
    main()
