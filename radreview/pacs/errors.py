"""What can go wrong when talking to a PACS, each with a message that names the node."""

from __future__ import annotations


class PacsError(Exception):
    """A PACS operation failed. ``str(error)`` is ``"<node>: <problem>"``."""

    def __init__(self, node: str, problem: str) -> None:
        super().__init__(f"{node}: {problem}" if node else problem)
        self.node = node
        self.problem = problem


class PacsUnreachable(PacsError):
    """No connection: nothing listens there, the host is unknown, or it did not answer."""


class AssociationRejected(PacsError):
    """The PACS answered but refused the association (e.g. a wrong called or calling AE title)."""


class OperationFailed(PacsError):
    """A C-FIND/C-GET/C-MOVE/C-STORE or DICOMweb request came back with a failure status."""

    def __init__(self, node: str, problem: str, status: int | None = None) -> None:
        super().__init__(node, problem)
        self.status = status


class MoveDestinationUnknown(OperationFailed):
    """The PACS does not know the AE title given as the C-MOVE destination."""


class SrError(ValueError):
    """An AI-results object (SR, secondary capture) cannot be written for this input."""


def short_uid(uid: str) -> str:
    """A UID shortened for logs: enough to tell objects apart, nothing more."""
    uid = str(uid)
    return uid if len(uid) <= 12 else "…" + uid[-10:]
