"""C-FIND at patient, study, series or image level.

A :class:`Query` holds the usual keys (patient ID and name, study dates, modality, accession
number, UIDs); DICOM wildcards (``*``, ``?``) and date ranges (``20240101-20240131``) pass
through. Each match comes back as a dict of DICOM keyword -> text, with the columns of
:data:`RETURN_KEYS` for its level, in that order (what ``radreview pacs find --out`` writes).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

from pydicom.dataset import Dataset
from pydicom.multival import MultiValue
from pynetdicom.sop_class import (
    PatientRootQueryRetrieveInformationModelFind,
    StudyRootQueryRetrieveInformationModelFind,
)
from pynetdicom.status import QR_FIND_SERVICE_CLASS_STATUS

from radreview.pacs.dimse import application_entity, associate, failure, is_failure, status_of
from radreview.pacs.nodes import DEFAULT_LOCAL_AET, PacsNode

LEVELS = ("PATIENT", "STUDY", "SERIES", "IMAGE")

RETURN_KEYS: dict[str, tuple[str, ...]] = {
    "PATIENT": ("PatientID", "PatientName", "PatientBirthDate", "PatientSex", "NumberOfPatientRelatedStudies"),
    "STUDY": ("StudyInstanceUID", "PatientID", "PatientName", "PatientBirthDate", "PatientSex", "StudyDate",
              "StudyTime", "AccessionNumber", "StudyID", "StudyDescription", "ModalitiesInStudy",
              "NumberOfStudyRelatedSeries", "NumberOfStudyRelatedInstances"),
    "SERIES": ("StudyInstanceUID", "SeriesInstanceUID", "Modality", "SeriesNumber", "SeriesDescription",
               "BodyPartExamined", "NumberOfSeriesRelatedInstances"),
    "IMAGE": ("StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID", "SOPClassUID", "InstanceNumber"),
}


DATE_QUERY = re.compile(r"\d{8}|\d{8}-|-\d{8}|\d{8}-\d{8}")


@dataclass
class Query:
    """Matching keys; empty means "any"."""

    patient_id: str = ""
    patient_name: str = ""
    study_date: str = ""  # YYYYMMDD, or a range YYYYMMDD-YYYYMMDD (either end may be open)
    modality: str = ""
    accession_number: str = ""
    study_uid: str = ""
    series_uid: str = ""

    def __post_init__(self) -> None:
        # "2024-01-02" matched nothing, silently: DICOM dates are YYYYMMDD
        if self.study_date and not DATE_QUERY.fullmatch(self.study_date):
            raise ValueError(f"study date {self.study_date!r}: DICOM dates are YYYYMMDD, a range "
                             "YYYYMMDD-YYYYMMDD (either end may be left open, e.g. 20240101-)")

    def matching(self, level: str) -> dict[str, str]:
        """Keyword -> value of the keys this query matches on at ``level``."""
        keys = {"PatientID": self.patient_id, "PatientName": self.patient_name}
        if level != "PATIENT":
            keys |= {"StudyDate": self.study_date, "AccessionNumber": self.accession_number,
                     "StudyInstanceUID": self.study_uid}
            keys["ModalitiesInStudy" if level == "STUDY" else "Modality"] = self.modality
        if level in ("SERIES", "IMAGE"):
            keys["SeriesInstanceUID"] = self.series_uid
        return {k: v for k, v in keys.items() if v}


def identifier(level: str, query: Query) -> Dataset:
    """The C-FIND identifier: the matching keys plus empty return keys of ``level``."""
    level = level.upper()
    if level not in LEVELS:
        raise ValueError(f"query level must be one of {', '.join(LEVELS)}, not {level!r}")
    ds = Dataset()
    ds.QueryRetrieveLevel = level
    wanted = dict.fromkeys(RETURN_KEYS[level], "")
    matching = query.matching(level)
    if level in ("SERIES", "IMAGE") and not matching.get("StudyInstanceUID"):
        raise ValueError(f"a {level.lower()}-level query needs a study UID")
    if level == "IMAGE" and not matching.get("SeriesInstanceUID"):
        raise ValueError("an image-level query needs a series UID")
    if level in ("SERIES", "IMAGE"):
        # Hierarchical C-FIND: below the study only unique keys of the levels above may be sent.
        matching = {k: v for k, v in matching.items() if k in ("StudyInstanceUID", "SeriesInstanceUID", "Modality")}
        wanted = {k: v for k, v in wanted.items() if k not in ("PatientID", "PatientName")}
    for keyword, value in (wanted | matching).items():
        setattr(ds, keyword, value)
    return ds


def as_text(value: object) -> str:
    if value is None:
        return ""
    if isinstance(value, MultiValue | list | tuple):
        return "\\".join(str(v) for v in value)
    return str(value)


def find(node: PacsNode, level: str = "STUDY", query: Query | None = None, calling_aet: str = DEFAULT_LOCAL_AET,
         timeout: float | None = None, cancel: Callable[[], bool] | None = None,
         limit: int = 0) -> list[dict[str, str]]:
    """C-FIND ``level`` matches of ``query`` on ``node``; raises a PacsError naming the node.

    Patient level uses the Patient Root model, the others Study Root. ``limit`` > 0 stops after
    that many matches (sending a C-CANCEL), as does ``cancel()`` returning True."""
    level = level.upper()
    ds = identifier(level, query or Query())
    model = PatientRootQueryRetrieveInformationModelFind if level == "PATIENT" else StudyRootQueryRetrieveInformationModelFind
    ae = application_entity(calling_aet, timeout)
    ae.add_requested_context(model)
    assoc = associate(ae, node, what=model)
    matches: list[dict[str, str]] = []
    columns = RETURN_KEYS[level]
    try:
        responses = assoc.send_c_find(ds, model)
        for response, found in responses:
            status = status_of(response)
            if status is None or is_failure(status):
                raise failure(node, f"C-FIND at {level.lower()} level", status, QR_FIND_SERVICE_CLASS_STATUS, assoc)
            if status in (0xFF00, 0xFF01) and found is not None:
                matches.append({key: as_text(found.get(key)) for key in columns})
                if (limit and len(matches) >= limit) or (cancel is not None and cancel()):
                    assoc.send_c_cancel(1, query_model=model)  # the request went with message ID 1
                    for _ in responses:  # drain what the node still sends (up to its Cancel status)
                        pass
                    break
    finally:
        if assoc.is_established:
            assoc.release()
    return matches
