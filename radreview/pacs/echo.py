"""C-ECHO: is the node there, and does it accept us?"""

from __future__ import annotations

import time

from pynetdicom.sop_class import Verification
from pynetdicom.status import VERIFICATION_SERVICE_CLASS_STATUS

from radreview.pacs.dimse import application_entity, associate, failure, status_of
from radreview.pacs.nodes import DEFAULT_LOCAL_AET, PacsNode


def echo(node: PacsNode, calling_aet: str = DEFAULT_LOCAL_AET, timeout: float | None = None) -> float:
    """Send a C-ECHO; return the round trip in seconds or raise a PacsError naming the node."""
    ae = application_entity(calling_aet, timeout)
    ae.add_requested_context(Verification)
    start = time.perf_counter()
    assoc = associate(ae, node, what=Verification)
    try:
        status = status_of(assoc.send_c_echo())
    finally:
        assoc.release()
    if status != 0x0000:
        raise failure(node, "C-ECHO", status, VERIFICATION_SERVICE_CLASS_STATUS)
    return time.perf_counter() - start
