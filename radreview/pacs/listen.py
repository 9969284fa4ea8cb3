"""A storage SCP that files what it receives into the cache (``radreview pacs listen``, and the
destination of our C-MOVE requests).

Each object is written byte for byte as received (:func:`radreview.pacs.cache.store_encoded`),
under its study folder; an object that is not an image (an SR, a key-object selection) is filed
too and reported with ``viewable=False``. Objects whose UIDs cannot name a file are refused with
a failure status, and an instance already cached is kept as it was.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from pathlib import Path

from pynetdicom import evt
from pynetdicom.sop_class import Verification

from radreview.pacs.cache import StoredObject, cache_root, is_viewable, store_encoded, valid_uid
from radreview.pacs.dimse import STORAGE_SOP_CLASSES, application_entity, storage_contexts
from radreview.pacs.errors import PacsError, short_uid
from radreview.pacs.nodes import DEFAULT_LOCAL_AET

log = logging.getLogger(__name__)

STATUS_STORED = 0x0000
STATUS_OUT_OF_RESOURCES = 0xA700
STATUS_CANNOT_UNDERSTAND = 0xC000


class StoreHandler:
    """The C-STORE handler: files each object and tells ``on_stored`` (from the network thread)."""

    def __init__(self, root: Path, on_stored: Callable[[StoredObject], None] | None = None,
                 on_refused: Callable[[str], None] | None = None, stop: Callable[[], bool] | None = None) -> None:
        self.root = Path(root)
        self.stop = stop  # once it says True nothing more is filed (a cancelled retrieval)
        self.on_stored = on_stored
        self.on_refused = on_refused
        self.lock = threading.Lock()
        self.stored: list[StoredObject] = []
        self.refused: list[str] = []

    def __call__(self, event) -> int:
        sop_uid = str(event.request.AffectedSOPInstanceUID or "")
        sop_class = str(event.request.AffectedSOPClassUID or "")
        if self.stop is not None and self.stop():
            return STATUS_OUT_OF_RESOURCES  # the sender counts it failed; the retriever aborts
        try:
            ds = event.dataset
            study_uid = str(ds.get("StudyInstanceUID", ""))
            if not valid_uid(study_uid) or not valid_uid(sop_uid):
                return self._refuse(STATUS_CANNOT_UNDERSTAND, f"object {short_uid(sop_uid)} has no valid study/SOP UID")
            stored = store_encoded(self.root, event.encoded_dataset(), study_uid, sop_uid, sop_class, is_viewable(ds))
        except OSError as exc:
            return self._refuse(STATUS_OUT_OF_RESOURCES, f"cannot file {short_uid(sop_uid)}: {exc.strerror or exc}")
        except Exception as exc:  # noqa: BLE001 - a malformed object must not stop the listener
            return self._refuse(STATUS_CANNOT_UNDERSTAND, f"cannot decode {short_uid(sop_uid)}: {type(exc).__name__}")
        with self.lock:
            self.stored.append(stored)
        if self.on_stored is not None:
            self.on_stored(stored)
        return STATUS_STORED

    def _refuse(self, status: int, reason: str) -> int:
        log.warning("storage SCP refused an object: %s", reason)
        with self.lock:
            self.refused.append(reason)
        if self.on_refused is not None:
            self.on_refused(reason)
        return status


class StorageListener:
    """A running storage SCP. Use as a context manager, or call :meth:`start` / :meth:`stop`."""

    def __init__(self, ae_title: str = DEFAULT_LOCAL_AET, port: int = 11112, host: str = "",
                 root: Path | None = None, on_stored: Callable[[StoredObject], None] | None = None,
                 on_refused: Callable[[str], None] | None = None, stop: Callable[[], bool] | None = None) -> None:
        self.ae_title = ae_title
        self.host = host  # "" = every interface: a PACS must be able to reach us
        self.port = port
        self.root = Path(root) if root is not None else cache_root()
        self.handler = StoreHandler(self.root, on_stored, on_refused, stop)
        self._server = None

    def start(self) -> StorageListener:
        ae = application_entity(self.ae_title)
        ae.maximum_associations = 8
        ae.supported_contexts = storage_contexts(STORAGE_SOP_CLASSES)
        ae.add_supported_context(Verification)
        try:
            self._server = ae.start_server((self.host, self.port), block=False,
                                           evt_handlers=[(evt.EVT_C_STORE, self.handler)])
        except OSError as exc:
            where = f"{self.host or '*'}:{self.port}"
            raise PacsError(f"storage SCP {self.ae_title}", f"cannot listen on {where}: {exc.strerror or exc}"
                            " (is another listener, e.g. `radreview pacs listen`, using the port?)") from None
        self.port = self._server.server_address[1]
        log.debug("storage SCP %s listening on port %d, filing into %s", self.ae_title, self.port, self.root)
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server = None

    def __enter__(self) -> StorageListener:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
