"""Talking to a PACS: echo, find, get/move, send, a storage listener, DICOMweb; AI results as DICOM.

DIMSE goes through pynetdicom, DICOMweb through the standard library's HTTP client, SR and
secondary captures are built with highdicom. No Qt, no torch: the CLI (``radreview pacs``) and
the viewer's PACS dialog call the same plain functions, which take ``progress(done, total)`` and
``cancel() -> bool`` where the work is long. Every failure is a :class:`PacsError` whose message
names the node. Retrieved objects are filed in a local cache folder (:mod:`radreview.pacs.cache`)
that is only ever added to.

Patient data: identifiers travel in the DICOM objects themselves and in what ``find`` returns to
its caller; nothing here logs a patient name or ID (UIDs are logged truncated).
"""

from radreview.pacs.errors import (
    AssociationRejected,
    MoveDestinationUnknown,
    OperationFailed,
    PacsError,
    PacsUnreachable,
    SrError,
)
from radreview.pacs.nodes import LocalAE, PacsNode, PacsSettings, load_pacs_settings, save_pacs_settings

__all__ = [
    "AssociationRejected",
    "LocalAE",
    "MoveDestinationUnknown",
    "OperationFailed",
    "PacsError",
    "PacsNode",
    "PacsSettings",
    "PacsUnreachable",
    "SrError",
    "load_pacs_settings",
    "save_pacs_settings",
]
