"""What radreview knows about the studies a user opened: patient ▸ study ▸ series ▸ image.

Headers are read once, lazily, when indexing; pixels are decoded on demand
(see :mod:`radreview.studies.pixels`). Raster files (PNG/JPEG/TIFF) become single-image
series under a synthetic patient and study so that everything downstream sees one shape.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

ImageKind = Literal["dicom", "raster"]


@dataclass(frozen=True)
class LoadProblem:
    """A file or folder that could not be opened, and why, in words a user understands."""

    path: Path
    reason: str

    def __str__(self) -> str:
        return f"{self.path}: {self.reason}"


@dataclass
class ImageEntry:
    """One file (one SOP instance, possibly multi-frame) found while indexing."""

    path: Path
    kind: ImageKind
    sop_instance_uid: str
    rows: int = 0
    columns: int = 0
    number_of_frames: int = 1
    instance_number: int | None = None
    modality: str = ""
    photometric: str = ""
    view_position: str = ""  # AP, PA, LAT...
    laterality: str = ""  # L, R
    body_part: str = ""  # Body Part Examined
    # Keys of the parents, so that an entry can be placed and its neighbours found.
    patient_key: str = ""
    study_uid: str = ""
    series_uid: str = ""
    # Added while indexing, for the header panel and for decoding without re-reading headers.
    sop_class_uid: str = ""
    transfer_syntax_uid: str = ""
    bits_stored: int = 0
    samples_per_pixel: int = 1
    pixel_spacing: tuple[float, float] | None = None  # mm (row, column), when known
    spacing_source: str | None = None  # "Pixel Spacing" / "Imager Pixel Spacing"
    raster_format: str = ""  # PIL format name (JPEG, PNG, TIFF) for raster files

    @property
    def label(self) -> str:
        """A short caption: view, laterality, instance, file name."""
        parts = [p for p in (self.body_part, self.view_position, self.laterality) if p]
        if self.instance_number is not None:
            parts.append(f"#{self.instance_number}")
        return " ".join(parts) or self.path.name


@dataclass
class Series:
    uid: str
    number: int | None = None
    description: str = ""
    modality: str = ""
    images: list[ImageEntry] = field(default_factory=list)


@dataclass
class Study:
    uid: str
    date: str = ""  # YYYYMMDD as in the file
    description: str = ""
    accession_number: str = ""
    series: list[Series] = field(default_factory=list)

    def images(self) -> list[ImageEntry]:
        return [image for series in self.series for image in series.images]


@dataclass
class Patient:
    key: str  # Patient ID, or a synthetic key for raster files
    name: str = ""
    birth_date: str = ""
    sex: str = ""
    studies: list[Study] = field(default_factory=list)


@dataclass
class StudyIndex:
    """Everything found under the paths a user opened, plus what could not be opened."""

    patients: list[Patient] = field(default_factory=list)
    problems: list[LoadProblem] = field(default_factory=list)
    cancelled: bool = False  # the cancel check stopped indexing; what was found so far is kept

    def studies(self) -> list[Study]:
        return [study for patient in self.patients for study in patient.studies]

    def images(self) -> list[ImageEntry]:
        return [image for study in self.studies() for image in study.images()]

    def merge(self, other: StudyIndex) -> None:
        """Add another index's patients/studies/series/images, merging by key and UID."""
        patients = {p.key: p for p in self.patients}
        for patient in other.patients:
            mine = patients.get(patient.key)
            if mine is None:
                self.patients.append(patient)
                patients[patient.key] = patient
                continue
            studies = {s.uid: s for s in mine.studies}
            for study in patient.studies:
                if study.uid not in studies:
                    mine.studies.append(study)
                    studies[study.uid] = study
                    continue
                series_by_uid = {s.uid: s for s in studies[study.uid].series}
                for series in study.series:
                    if series.uid not in series_by_uid:
                        studies[study.uid].series.append(series)
                        continue
                    known = {i.sop_instance_uid for i in series_by_uid[series.uid].images}
                    series_by_uid[series.uid].images.extend(
                        i for i in series.images if i.sop_instance_uid not in known
                    )
        self.problems.extend(other.problems)
        self.cancelled = self.cancelled or other.cancelled

    def find_image(self, path: Path) -> ImageEntry | None:
        """The entry for a file, or None."""
        return next((image for image in self.images() if image.path == path), None)
