"""C-STORE: send DICOM files (or data sets made here, such as an SR) to a node.

Files are read first (headers only) to learn the SOP classes and transfer syntaxes to propose;
one association carries at most 128 presentation contexts, so a mixed batch may take several.
A file that is not DICOM, or that the node refuses, is reported and the rest still go.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pydicom
from pydicom.dataset import Dataset
from pydicom.errors import InvalidDicomError
from pynetdicom.presentation import build_context
from pynetdicom.status import STORAGE_SERVICE_CLASS_STATUS

from radreview.pacs.dimse import MAX_CONTEXTS, application_entity, associate, status_of, status_text
from radreview.pacs.errors import PacsError, short_uid
from radreview.pacs.nodes import DEFAULT_LOCAL_AET, PacsNode

log = logging.getLogger(__name__)
EXPLICIT_LE = "1.2.840.10008.1.2.1"
Progress = Callable[[int, int], None]
Cancel = Callable[[], bool]


@dataclass
class SendResult:
    sent: list[str] = field(default_factory=list)  # what went: file paths, or SOP Instance UIDs
    warnings: list[tuple[str, str]] = field(default_factory=list)  # stored, with a warning status
    failed: list[tuple[str, str]] = field(default_factory=list)  # (what, why)
    cancelled: bool = False


@dataclass
class _Item:
    name: str  # a path, or "<SOP class name> …uid" for a data set
    sop_class: str
    transfer_syntax: str
    source: Path | Dataset


def dicom_files(paths: Iterable[str | Path]) -> list[Path]:
    """Files named, and every file under folders named (sorted), without our cache markers."""
    files: list[Path] = []
    for path in map(Path, paths):
        if path.is_dir():
            files += sorted(p for p in path.rglob("*") if p.is_file() and not p.name.startswith("."))
        else:
            files.append(path)
    return files


def _items(sources: Sequence[str | Path | Dataset], result: SendResult) -> list[_Item]:
    items: list[_Item] = []
    for source in sources:
        if isinstance(source, Dataset):
            meta = getattr(source, "file_meta", None)
            syntax = str(meta.TransferSyntaxUID) if meta is not None and "TransferSyntaxUID" in meta else "1.2.840.10008.1.2.1"
            items.append(_Item(f"{source.SOPClassUID.name} {short_uid(source.SOPInstanceUID)}",
                               str(source.SOPClassUID), syntax, source))
            continue
        path = Path(source)
        try:
            ds = pydicom.dcmread(path, stop_before_pixels=True)
            items.append(_Item(str(path), str(ds.SOPClassUID), str(ds.file_meta.TransferSyntaxUID), path))
        except (InvalidDicomError, AttributeError, KeyError):
            result.failed.append((str(path), "not a DICOM file with a SOP class and transfer syntax"))
        except OSError as exc:
            result.failed.append((str(path), f"cannot read: {exc.strerror or exc}"))
    return items


def _contexts_of(item: _Item) -> set[tuple[str, str]]:
    """(SOP class, transfer syntax) contexts an item needs: its own encoding, each in a context
    of its own (a node accepts one syntax per context, and a compressed object cannot go on an
    uncompressed one), plus uncompressed for the class as a fallback."""
    return {(item.sop_class, item.transfer_syntax), (item.sop_class, EXPLICIT_LE)}


def _batches(items: list[_Item]) -> list[tuple[list[_Item], list[tuple[str, str]]]]:
    """Split so that no association needs more than MAX_CONTEXTS contexts."""
    batches: list[tuple[list[_Item], list[tuple[str, str]]]] = []
    current: list[_Item] = []
    contexts: dict[tuple[str, str], None] = {}
    for item in items:
        needed = [c for c in sorted(_contexts_of(item)) if c not in contexts]
        if current and len(contexts) + len(needed) > MAX_CONTEXTS:
            batches.append((current, list(contexts)))
            current, contexts = [], {}
            needed = sorted(_contexts_of(item))
        current.append(item)
        contexts.update(dict.fromkeys(needed))
    if current:
        batches.append((current, list(contexts)))
    return batches


def send(node: PacsNode, sources: Sequence[str | Path | Dataset], calling_aet: str = DEFAULT_LOCAL_AET,
         progress: Progress | None = None, cancel: Cancel | None = None, timeout: float | None = None) -> SendResult:
    """C-STORE every file/data set of ``sources`` to ``node``.

    Raises a PacsError when the node cannot be reached or refuses the association; refusals of
    single objects are in ``failed``. ``cancel()`` is checked between objects."""
    result = SendResult()
    items = _items(list(sources), result)
    total = len(items)
    done = 0
    for batch, contexts in _batches(items):
        ae = application_entity(calling_aet, timeout)
        for sop_class, syntax in contexts:
            ae.requested_contexts.append(build_context(sop_class, [syntax]))
        assoc = associate(ae, node)
        try:
            for item in batch:
                if cancel is not None and cancel():
                    result.cancelled = True
                    return result
                _store_one(assoc, node, item, result)
                done += 1
                if progress is not None:
                    progress(done, total)
        finally:
            if assoc.is_established:
                assoc.release()
    return result


def _store_one(assoc, node: PacsNode, item: _Item, result: SendResult) -> None:
    try:
        response = assoc.send_c_store(item.source if isinstance(item.source, Dataset) else str(item.source))
    except ValueError as exc:  # no accepted context for this SOP class / transfer syntax
        result.failed.append((item.name, f"{node.label} accepted no presentation context for it ({exc})"))
        return
    except (OSError, InvalidDicomError) as exc:
        result.failed.append((item.name, f"cannot read: {exc}"))
        return
    status = status_of(response)
    if status is None:
        if not assoc.is_established:
            raise PacsError(node.label, "the association was aborted during C-STORE")
        result.failed.append((item.name, "no answer to the C-STORE"))
    elif status == 0x0000:
        result.sent.append(item.name)
    elif status in (0xB000, 0xB006, 0xB007):
        result.sent.append(item.name)
        result.warnings.append((item.name, status_text(status, STORAGE_SERVICE_CLASS_STATUS)))
    else:
        result.failed.append((item.name, f"{node.label} refused it: {status_text(status, STORAGE_SERVICE_CLASS_STATUS)}"))
