"""Associations with a PACS (pynetdicom) and what its answers mean, in words naming the node.

pynetdicom's own log is kept at CRITICAL: at debug level it prints whole identifiers (patient
names and IDs), and its errors are re-said here as :class:`~radreview.pacs.errors.PacsError`.
"""

from __future__ import annotations

import logging
import socket
from collections.abc import Sequence

from pynetdicom import ALL_TRANSFER_SYNTAXES, AE, AllStoragePresentationContexts, build_context, build_role, evt
from pynetdicom.association import Association
from pynetdicom.pdu import A_ASSOCIATE_RJ
from pynetdicom.presentation import PresentationContext
from pynetdicom.status import code_to_category

from radreview.pacs.errors import AssociationRejected, OperationFailed, PacsUnreachable
from radreview.pacs.nodes import PacsNode

log = logging.getLogger(__name__)
logging.getLogger("pynetdicom").setLevel(logging.CRITICAL)

CONNECT_TIMEOUT = 10.0  # TCP connect
ASSOCIATE_TIMEOUT = 30.0  # A-ASSOCIATE negotiation
DIMSE_TIMEOUT = 120.0  # waiting for one response (a C-MOVE's next pending response may take a while)
MAX_CONTEXTS = 128  # presentation contexts one association may propose (PS3.8)

# Every transfer syntax pydicom knows: a storage SCP that accepts what the sender has keeps the
# bytes as they were (a PACS asked for uncompressed pixels would decompress them).
TRANSFER_SYNTAXES: list[str] = list(ALL_TRANSFER_SYNTAXES)
STORAGE_SOP_CLASSES: list[str] = [str(c.abstract_syntax) for c in AllStoragePresentationContexts]


def application_entity(calling_aet: str, timeout: float | None = None) -> AE:
    """An AE for our requests, with radreview's timeouts (``timeout`` overrides them all)."""
    ae = AE(ae_title=calling_aet)
    ae.connection_timeout = timeout or CONNECT_TIMEOUT
    ae.acse_timeout = timeout or ASSOCIATE_TIMEOUT
    ae.dimse_timeout = timeout or DIMSE_TIMEOUT
    ae.network_timeout = timeout or DIMSE_TIMEOUT
    ae.maximum_associations = 4
    return ae


def storage_contexts(sop_classes: Sequence[str]) -> list[PresentationContext]:
    return [build_context(uid, TRANSFER_SYNTAXES) for uid in dict.fromkeys(sop_classes)]


# Transfer syntaxes offered for C-GET, each in a context of its own: the PACS accepts one
# syntax per context, so a single context listing them all would get the PACS's preferred
# (uncompressed) one, and it would decompress JPEG radiographs to send them.
GET_TRANSFER_SYNTAXES: tuple[str, ...] = (
    "1.2.840.10008.1.2.1",  # explicit VR little endian
    "1.2.840.10008.1.2",  # implicit VR little endian
    "1.2.840.10008.1.2.4.50",  # JPEG baseline
    "1.2.840.10008.1.2.4.51",  # JPEG extended
    "1.2.840.10008.1.2.4.57",  # JPEG lossless
    "1.2.840.10008.1.2.4.70",  # JPEG lossless, first-order prediction
    "1.2.840.10008.1.2.4.80",  # JPEG-LS lossless
    "1.2.840.10008.1.2.4.81",  # JPEG-LS near-lossless
    "1.2.840.10008.1.2.4.90",  # JPEG 2000 lossless
    "1.2.840.10008.1.2.4.91",  # JPEG 2000
    "1.2.840.10008.1.2.5",  # RLE lossless
    "1.2.840.10008.1.2.1.99",  # deflated explicit VR little endian
)


def get_storage_contexts(sop_classes: Sequence[str], budget: int) -> list[PresentationContext]:
    """Storage contexts for C-GET within ``budget`` contexts: one per SOP class and syntax while
    that fits, then uncompressed only for the classes beyond it."""
    classes = list(dict.fromkeys(sop_classes))
    per_class = len(GET_TRANSFER_SYNTAXES)
    full = min(len(classes), budget // per_class)
    contexts = [build_context(uid, [ts]) for uid in classes[:full] for ts in GET_TRANSFER_SYNTAXES]
    room = budget - len(contexts)
    contexts += [build_context(uid, list(GET_TRANSFER_SYNTAXES[:2])) for uid in classes[full:full + room]]
    return contexts


def scp_roles(sop_classes: Sequence[str]) -> list:
    """SCP/SCU role selection items: C-GET sends the instances back on the same association."""
    return [build_role(uid, scp_role=True) for uid in dict.fromkeys(sop_classes)]


def unreachable_reason(host: str, port: int, timeout: float) -> str:
    """Why no association could be opened, found by trying a plain TCP connection."""
    try:
        with socket.create_connection((host, port), timeout=timeout):
            pass
    except socket.gaierror:
        return f"unreachable: host {host!r} is unknown (name not resolved)"
    except ConnectionRefusedError:
        return f"unreachable: connection refused (nothing listens on {host}:{port})"
    except TimeoutError:
        return f"unreachable: no answer from {host}:{port} within {timeout:g} s"
    except OSError as exc:
        return f"unreachable: {exc.strerror or exc}"
    return "accepted the connection but not the association (it aborted or did not answer in time)"


def associate(ae: AE, node: PacsNode, ext_neg: Sequence | None = None, evt_handlers: Sequence | None = None,
              what: str = "") -> Association:
    """Open an association with ``node`` or raise PacsUnreachable / AssociationRejected."""
    rejections: list = []
    handlers = [*(evt_handlers or []),
                (evt.EVT_PDU_RECV, lambda event: _keep_rejection(event, rejections))]
    try:
        assoc = ae.associate(node.host, node.port, ae_title=node.ae_title, ext_neg=list(ext_neg or []) or None,
                             evt_handlers=handlers)
    except OSError:  # e.g. the host name does not resolve
        raise PacsUnreachable(node.label, unreachable_reason(node.host, node.port, ae.connection_timeout or 5.0)) from None
    if assoc.is_established:
        if what and not any(cx.abstract_syntax == what for cx in assoc.accepted_contexts):
            assoc.release()
            raise OperationFailed(node.label, f"does not offer {_service_name(what)}")
        return assoc
    if assoc.is_rejected:
        raise AssociationRejected(node.label, rejection_message(assoc.acceptor.primitive, node, ae))
    if rejections:
        # pynetdicom 3.0 races here: when the peer rejects and closes the connection before the
        # requesting thread looks at the socket, the association is marked aborted although the
        # A-ASSOCIATE-RJ arrived (seen with Orthanc under load, about 1 in 13 attempts).
        raise AssociationRejected(node.label, rejection_message(rejections[0].to_primitive(), node, ae))
    raise PacsUnreachable(node.label, unreachable_reason(node.host, node.port, ae.connection_timeout or CONNECT_TIMEOUT))


def _keep_rejection(event, rejections: list) -> None:
    """Keep an A-ASSOCIATE-RJ PDU as it arrives (see ``associate``)."""
    if isinstance(event.pdu, A_ASSOCIATE_RJ):
        rejections.append(event.pdu)


def rejection_message(primitive, node: PacsNode, ae: AE) -> str:
    """What a rejection says, with a hint for the two AE title mistakes a user can fix."""
    reason = primitive.reason_str if primitive is not None else "no reason given"
    hint = ""
    if primitive is not None and primitive.result_source == 1 and primitive.diagnostic == 7:
        hint = f" (is {node.ae_title!r} the PACS's AE title?)"
    elif primitive is not None and primitive.result_source == 1 and primitive.diagnostic == 3:
        hint = f" (the PACS does not know our AE title {ae.ae_title!r}: ask for it to be registered)"
    return f"association rejected: {reason}{hint}"


def _service_name(uid: str) -> str:
    from pydicom.uid import UID

    return UID(uid).name


def status_of(response) -> int | None:
    """The Status of a response data set, or None when the peer sent nothing (timeout, abort)."""
    if response is None or "Status" not in response:
        return None
    return int(response.Status)


def is_failure(status: int) -> bool:
    return code_to_category(status) in ("Failure", "Cancel")


def status_text(status: int, table: dict) -> str:
    category, meaning = table.get(status, (code_to_category(status), "unknown status"))
    return f"{meaning} (status 0x{status:04X}, {category.lower()})"


def failure(node: PacsNode, what: str, status: int | None, table: dict, assoc: Association | None = None) -> OperationFailed:
    if status is None:
        calling = f" from our AE title {assoc.requestor.ae_title!r}" if assoc is not None else ""
        return OperationFailed(node.label, f"{what}: no answer: the node aborted the association or timed out "
                                           f"(does it allow this service{calling}?)")
    return OperationFailed(node.label, f"{what} failed: {status_text(status, table)}", status)
