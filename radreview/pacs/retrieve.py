"""Retrieving a study into the cache: C-GET, or C-MOVE to a storage SCP of our own.

The study's instances are listed first (C-FIND at series and image level) so that a retry
fetches only what the cache lacks: the first try asks for the whole study, a resume asks per
series for the missing instances. Until every listed instance is in the cache the study folder
carries the incomplete marker (:func:`radreview.pacs.cache.mark_incomplete`). Stopping (cancel,
a dropped association, a PACS that gives up) keeps everything received; nothing cached is ever
deleted or overwritten.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from pydicom.dataset import Dataset
from pynetdicom import evt
from pynetdicom.sop_class import (
    StudyRootQueryRetrieveInformationModelGet,
    StudyRootQueryRetrieveInformationModelMove,
)
from pynetdicom.status import QR_GET_SERVICE_CLASS_STATUS, QR_MOVE_SERVICE_CLASS_STATUS

from radreview.pacs.cache import (
    StoredObject,
    cache_root,
    cached_instances,
    clear_incomplete,
    mark_incomplete,
    study_folder,
)
from radreview.pacs.dimse import (
    MAX_CONTEXTS,
    application_entity,
    associate,
    is_failure,
    scp_roles,
    status_of,
    status_text,
    get_storage_contexts,
)
from radreview.pacs.errors import MoveDestinationUnknown, OperationFailed, PacsError, short_uid
from radreview.pacs.find import Query, find
from radreview.pacs.listen import StorageListener, StoreHandler
from radreview.pacs.nodes import DEFAULT_LOCAL_AET, LocalAE, PacsNode

log = logging.getLogger(__name__)
Progress = Callable[[int, int], None]
Cancel = Callable[[], bool]
UIDS_PER_REQUEST = 200  # instance UIDs in one image-level request (keeps identifiers small)

# C-GET needs a storage context per SOP class before it knows what comes: when the listing
# gives no SOP classes, offer the ones a radiograph archive holds.
FALLBACK_SOP_CLASSES = (
    "1.2.840.10008.5.1.4.1.1.1",  # CR
    "1.2.840.10008.5.1.4.1.1.1.1",  # DX for presentation
    "1.2.840.10008.5.1.4.1.1.1.1.1",  # DX for processing
    "1.2.840.10008.5.1.4.1.1.7",  # secondary capture
    "1.2.840.10008.5.1.4.1.1.88.33",  # comprehensive SR
    "1.2.840.10008.5.1.4.1.1.88.22",  # enhanced SR
    "1.2.840.10008.5.1.4.1.1.88.59",  # key object selection
)


@dataclass(frozen=True)
class Instance:
    series_uid: str
    sop_instance_uid: str
    sop_class_uid: str = ""


@dataclass
class RetrieveResult:
    study_uid: str
    folder: Path
    source: str  # the node's label
    expected: int = 0
    already_cached: int = 0  # instances the cache held before this run (not fetched again)
    received: list[StoredObject] = field(default_factory=list)  # filed by this run
    refused: list[str] = field(default_factory=list)  # objects our storage SCP could not file
    failed_suboperations: int = 0  # what the PACS reports it could not send
    missing: int = 0  # listed instances still not in the cache
    cancelled: bool = False
    error: str = ""  # why the transfer stopped early ("" = it did not)

    @property
    def complete(self) -> bool:
        """Every instance the node listed is in the cache (False while nothing was listed)."""
        return self.expected > 0 and self.missing == 0

    @property
    def not_viewable(self) -> list[StoredObject]:
        """Objects received that hold no pixels (SR, KOS, ...): filed, but not images to show."""
        return [s for s in self.received if not s.viewable]

    def summary(self) -> str:
        state = "complete" if self.complete else ("cancelled, incomplete" if self.cancelled else "incomplete")
        text = (f"study {short_uid(self.study_uid)} from {self.source}: {len(self.received)} received, "
                f"{self.already_cached} already cached, {self.missing} missing of {self.expected} ({state})")
        if self.not_viewable:
            text += f"; {len(self.not_viewable)} not viewable (no image: e.g. an SR)"
        if self.error:
            text += f"; {self.error}"
        return text


def list_instances(node: PacsNode, study_uid: str, calling_aet: str = DEFAULT_LOCAL_AET,
                   timeout: float | None = None, cancel: Cancel | None = None) -> list[Instance]:
    """Every instance of the study on ``node`` (C-FIND per series, then per image)."""
    instances: list[Instance] = []
    for series in find(node, "SERIES", Query(study_uid=study_uid), calling_aet, timeout):
        if cancel is not None and cancel():
            raise _Stopped("cancelled")  # never a partial list: it would make a study look complete
        query = Query(study_uid=study_uid, series_uid=series["SeriesInstanceUID"])
        for image in find(node, "IMAGE", query, calling_aet, timeout):
            instances.append(Instance(series["SeriesInstanceUID"], image["SOPInstanceUID"], image["SOPClassUID"]))
    return instances


def plan_requests(study_uid: str, instances: Sequence[Instance], cached: set[str]) -> list[Dataset]:
    """Retrieve identifiers for what the cache lacks: the whole study when it holds none of it,
    else per series (whole series, or the missing instances in image-level lists)."""
    missing = [i for i in instances if i.sop_instance_uid not in cached]
    if not missing:
        return []
    if len(missing) == len(instances):
        return [_identifier("STUDY", study_uid)]
    requests: list[Dataset] = []
    by_series: dict[str, list[Instance]] = {}
    for instance in instances:
        by_series.setdefault(instance.series_uid, []).append(instance)
    for series_uid, members in by_series.items():
        lacking = [i.sop_instance_uid for i in members if i.sop_instance_uid not in cached]
        if not lacking:
            continue
        if len(lacking) == len(members):
            requests.append(_identifier("SERIES", study_uid, series_uid))
            continue
        for start in range(0, len(lacking), UIDS_PER_REQUEST):
            requests.append(_identifier("IMAGE", study_uid, series_uid, lacking[start:start + UIDS_PER_REQUEST]))
    return requests


def _identifier(level: str, study_uid: str, series_uid: str = "", sop_uids: Sequence[str] = ()) -> Dataset:
    ds = Dataset()
    ds.QueryRetrieveLevel = level
    ds.StudyInstanceUID = study_uid
    if level in ("SERIES", "IMAGE"):
        ds.SeriesInstanceUID = series_uid
    if level == "IMAGE":
        ds.SOPInstanceUID = list(sop_uids) if len(sop_uids) > 1 else sop_uids[0]
    return ds


class _Tracker:
    """Counts what arrives for the study (from network threads) and reports progress."""

    def __init__(self, result: RetrieveResult, expected_uids: set[str], progress: Progress | None) -> None:
        self.result = result
        self.expected_uids = expected_uids
        self.progress = progress
        self.lock = threading.Lock()
        self.present = len(expected_uids & cached_instances(result.folder))

    def stored(self, obj: StoredObject) -> None:
        if obj.study_uid != self.result.study_uid:
            return  # a listener shared with other traffic
        with self.lock:
            if obj.already_cached:
                return
            self.result.received.append(obj)
            if obj.sop_instance_uid in self.expected_uids:
                self.present += 1
            present = self.present
        if self.progress is not None:
            self.progress(min(present, self.result.expected), self.result.expected)

    def refused(self, reason: str) -> None:
        with self.lock:
            self.result.refused.append(reason)


def retrieve_study(node: PacsNode, study_uid: str, method: str = "get", root: Path | None = None,
                   local: LocalAE | None = None, progress: Progress | None = None, cancel: Cancel | None = None,
                   timeout: float | None = None, listener: StorageListener | None = None,
                   destination: str = "") -> RetrieveResult:
    """Fetch the study from ``node`` into ``root`` (default: the cache) by C-GET or C-MOVE.

    ``local`` is this workstation (calling AE title; for C-MOVE also the destination AE title and
    the port our storage SCP listens on, which the PACS must know); ``destination`` names another
    C-MOVE destination AE title than ours. ``listener``: an already running storage SCP to
    receive the C-MOVE (else one is started for the transfer).
    Raises PacsError when the node is unreachable, refuses us, or refuses the request outright
    (e.g. an unknown C-MOVE destination); a transfer that stops part-way returns a result that
    is not ``complete`` and leaves the study marked incomplete."""
    if method not in ("get", "move"):
        raise ValueError(f"retrieve method must be 'get' or 'move', not {method!r}")
    local = local or LocalAE()
    root = Path(root) if root is not None else cache_root()
    folder = study_folder(root, study_uid)
    result = RetrieveResult(study_uid, folder, node.label)
    try:
        instances = list_instances(node, study_uid, local.ae_title, timeout, cancel)
    except _Stopped:
        result.cancelled, result.error = True, "cancelled while listing the study"
        return result
    if not instances:
        raise OperationFailed(node.label, f"has no instances of study {short_uid(study_uid)}")
    expected_uids = {i.sop_instance_uid for i in instances}
    result.expected = len(expected_uids)
    cached = cached_instances(folder)
    result.already_cached = len(expected_uids & cached)
    tracker = _Tracker(result, expected_uids, progress)
    if progress is not None:
        progress(tracker.present, result.expected)
    requests = plan_requests(study_uid, instances, cached)
    if requests:
        mark_incomplete(folder, result.expected, tracker.present, node.label)
        sop_classes = sorted({i.sop_class_uid for i in instances if i.sop_class_uid}) or list(FALLBACK_SOP_CLASSES)
        try:
            if method == "get":
                _run_get(node, requests, sop_classes, local, tracker, cancel, timeout, root)
            else:
                _run_move(node, requests, local, destination or local.ae_title, tracker, cancel, timeout, root,
                          listener)
        except _Stopped as stop:
            result.error = stop.reason
        except PacsError:
            # Refused outright: nothing of the study arrived now. A folder made only for the
            # marker goes again; one holding earlier instances keeps them, marked incomplete.
            if not cached_instances(folder):
                clear_incomplete(folder)
                try:
                    folder.rmdir()
                except OSError:
                    pass
            raise
    return finish_retrieval(result, folder, expected_uids, node.label)


def finish_retrieval(result: RetrieveResult, folder: Path, expected_uids: set[str], source: str) -> RetrieveResult:
    """Count what is still missing from the study folder and mark it incomplete (or complete)."""
    result.missing = len(expected_uids - cached_instances(folder))
    if result.missing == 0:
        clear_incomplete(folder)
    else:
        mark_incomplete(folder, result.expected, result.expected - result.missing, source)
    log.debug("%s", result.summary())
    return result


class _Stopped(Exception):
    """The transfer ended early; what arrived is kept."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def _check_final(node: PacsNode, status: int | None, response, table: dict, tracker: _Tracker,
                 what: str, move_aet: str = "", port: int = 0) -> None:
    completed = failed = 0
    if response is not None:
        completed = int(response.get("NumberOfCompletedSuboperations", 0) or 0)
        failed = int(response.get("NumberOfFailedSuboperations", 0) or 0)
        tracker.result.failed_suboperations += failed
    if status is None:
        raise _Stopped(f"{node.label}: no answer to the {what} (association aborted or timed out)")
    registration = (f"a destination must be registered on the PACS with its address and port (ours: {port}); "
                    "C-GET needs no registration")
    if status == 0xA801:
        raise MoveDestinationUnknown(node.label, f"does not know the C-MOVE destination {move_aet!r}: {registration}",
                                     status)
    if status == 0xFE00:
        raise _Stopped("cancelled")
    if is_failure(status):
        if what == "C-MOVE" and completed == failed == 0 and not tracker.result.received:
            # The study was just listed, so a move refused before any sub-operation is, in
            # practice, a destination the PACS does not know (Orthanc answers 0xC000 for it).
            raise MoveDestinationUnknown(
                node.label, f"refused the C-MOVE to {move_aet!r} before sending anything "
                            f"({status_text(status, table)}): probably an unknown destination; {registration}", status)
        if tracker.result.received or tracker.result.already_cached:
            raise _Stopped(f"{node.label}: {what} stopped: {status_text(status, table)}")
        raise OperationFailed(node.label, f"{what} failed: {status_text(status, table)}", status)


def _run_get(node, requests, sop_classes, local, tracker, cancel, timeout, root) -> None:
    model = StudyRootQueryRetrieveInformationModelGet
    ae = application_entity(local.ae_title, timeout)
    ae.add_requested_context(model)
    contexts = get_storage_contexts(sop_classes, MAX_CONTEXTS - 1)
    for context in contexts:
        ae.requested_contexts.append(context)
    classes = list(dict.fromkeys(str(c.abstract_syntax) for c in contexts))
    handler = StoreHandler(root, on_stored=tracker.stored, on_refused=tracker.refused, stop=cancel)
    assoc = associate(ae, node, ext_neg=scp_roles(classes), evt_handlers=[(evt.EVT_C_STORE, handler)], what=model)
    try:
        for number, request in enumerate(requests, start=1):
            status, final = None, None
            for response, _identifier in assoc.send_c_get(request, model, msg_id=number):
                status = status_of(response)
                final = response
                if cancel is not None and cancel():
                    tracker.result.cancelled = True
                    assoc.abort()  # immediate: what is filed stays, the marker says incomplete
                    raise _Stopped("cancelled")
                if status is None or status not in (0xFF00, 0xFF01):
                    break
            _check_final(node, status, final, QR_GET_SERVICE_CLASS_STATUS, tracker, "C-GET")
    finally:
        if assoc.is_established:
            assoc.release()


def _run_move(node, requests, local, destination, tracker, cancel, timeout, root, listener) -> None:
    model = StudyRootQueryRetrieveInformationModelMove
    own = None
    if listener is None:
        own = listener = StorageListener(local.ae_title, local.port, root=root, on_stored=tracker.stored,
                                         on_refused=tracker.refused, stop=cancel).start()
    else:
        previous = listener.handler.on_stored

        def chained(obj: StoredObject) -> None:
            tracker.stored(obj)
            if previous is not None:
                previous(obj)

        listener.handler.on_stored = chained
    try:
        ae = application_entity(local.ae_title, timeout)
        ae.add_requested_context(model)
        assoc = associate(ae, node, what=model)
        try:
            for number, request in enumerate(requests, start=1):
                status, final = None, None
                for response, _identifier in assoc.send_c_move(request, destination, model, msg_id=number):
                    status = status_of(response)
                    final = response
                    if cancel is not None and cancel():
                        tracker.result.cancelled = True
                        assoc.abort()
                        raise _Stopped("cancelled")
                    if status is None or status not in (0xFF00, 0xFF01):
                        break
                _check_final(node, status, final, QR_MOVE_SERVICE_CLASS_STATUS, tracker, "C-MOVE",
                             destination, listener.port)
        finally:
            if assoc.is_established:
                assoc.release()
    finally:
        if own is not None:
            own.stop()
        else:
            listener.handler.on_stored = previous
