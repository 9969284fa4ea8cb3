"""DICOMweb: QIDO-RS (search), WADO-RS (retrieve) and STOW-RS (store), with the standard library.

One small client over ``urllib`` (no third-party HTTP package). Searches return the same rows
as C-FIND (:data:`radreview.pacs.find.RETURN_KEYS`); a study is retrieved instance by instance
into the same cache, with the same resume and incomplete marker as C-GET/C-MOVE; stores take
files or data sets like :func:`radreview.pacs.send.send`. Instances are asked for in the
transfer syntax they are stored in (``transfer-syntax=*``), so pixels arrive as the PACS has them.
"""

from __future__ import annotations

import http.client
import io
import json
import logging
import urllib.error
import urllib.parse
import urllib.request
import uuid
from collections.abc import Callable, Sequence
from email.message import Message
from pathlib import Path

import pydicom
from pydicom.dataset import Dataset
from pydicom.filebase import DicomBytesIO

from radreview.pacs.cache import cache_root, cached_instances, mark_incomplete, store_encoded, study_folder
from radreview.pacs.errors import OperationFailed, PacsUnreachable, short_uid
from radreview.pacs.find import RETURN_KEYS, Query, as_text
from radreview.pacs.retrieve import Instance, RetrieveResult, finish_retrieval
from radreview.pacs.send import SendResult, dicom_files

log = logging.getLogger(__name__)
Progress = Callable[[int, int], None]
Cancel = Callable[[], bool]
DICOM_PART = 'multipart/related; type="application/dicom"'


class DicomWebClient:
    """A DICOMweb service root such as ``http://pacs:8042/dicom-web``."""

    def __init__(self, base_url: str, timeout: float = 60.0, name: str = "", headers: dict[str, str] | None = None):
        if not base_url.startswith(("http://", "https://")):
            raise ValueError(f"DICOMweb URL {base_url!r} must start with http:// or https://")
        self.base_url = base_url.rstrip("/")
        self.timeout = timeout
        self.headers = dict(headers or {})
        self.label = f"{name} ({self.base_url})" if name else self.base_url

    # -- HTTP ------------------------------------------------------------------------------------
    def _request(self, what: str, path: str, params: dict[str, str] | None = None, data: bytes | None = None,
                 headers: dict[str, str] | None = None, method: str = "GET") -> tuple[int, Message, bytes]:
        url = self.base_url + path
        if params:
            # commas (includefield lists), DICOM wildcards and the name separator ^ as they are: Orthanc
            # (1.10) matches the raw text and found nothing for %2A or %5E (tests/test_pacs_orthanc.py)
            url += "?" + urllib.parse.urlencode(params, safe=",*?^")
        request = urllib.request.Request(url, data=data, method=method, headers={**self.headers, **(headers or {})})
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:  # noqa: S310 - http(s) only
                return response.status, response.headers, response.read()
        except urllib.error.HTTPError as exc:
            detail = _error_detail(exc.read()[:2000])
            raise OperationFailed(self.label, f"{what} failed: HTTP {exc.code} {exc.reason}"
                                              + (f" ({detail})" if detail else ""), exc.code) from None
        except urllib.error.URLError as exc:
            reason = exc.reason
            text = getattr(reason, "strerror", None) or str(reason)
            raise PacsUnreachable(self.label, f"unreachable: {text}") from None
        except TimeoutError:
            raise PacsUnreachable(self.label, f"unreachable: no answer within {self.timeout:g} s") from None
        except (ConnectionError, http.client.HTTPException) as exc:  # e.g. a DICOM port, not an HTTP server
            raise PacsUnreachable(self.label, f"the connection broke off ({type(exc).__name__}: {exc or 'no answer'}); "
                                              "is this a DICOMweb URL?") from None

    # -- QIDO-RS ---------------------------------------------------------------------------------
    def search(self, level: str = "STUDY", query: Query | None = None, limit: int = 0) -> list[dict[str, str]]:
        """QIDO-RS search at study, series or image level: rows like :func:`radreview.pacs.find.find`."""
        level = level.upper()
        query = query or Query()
        if level == "STUDY":
            path = "/studies"
        elif level == "SERIES":
            if not query.study_uid:
                raise ValueError("a series-level search needs a study UID")
            path = f"/studies/{query.study_uid}/series"
        elif level == "IMAGE":
            if not query.study_uid:
                raise ValueError("an image-level search needs a study UID")
            path = f"/studies/{query.study_uid}" + (f"/series/{query.series_uid}" if query.series_uid else "") + "/instances"
        else:
            raise ValueError(f"DICOMweb searches are at STUDY, SERIES or IMAGE level, not {level!r}")
        params = {k: v for k, v in query.matching(level).items()
                  if k not in ("StudyInstanceUID", "SeriesInstanceUID") or level == "STUDY"}
        params["includefield"] = ",".join(RETURN_KEYS[level])
        if limit:
            params["limit"] = str(limit)
        status, _headers, body = self._request(f"QIDO-RS {level.lower()} search", path, params,
                                               headers={"Accept": "application/dicom+json"})
        if status == 204 or not body.strip():
            return []
        try:
            items = json.loads(body)
        except ValueError:
            raise OperationFailed(self.label, "QIDO-RS answered with something that is not JSON") from None
        if not isinstance(items, list) or not all(isinstance(item, dict) for item in items):
            # e.g. Orthanc's own REST API (a list of IDs) at a URL without /dicom-web
            raise OperationFailed(self.label, "QIDO-RS answered with JSON that is not a list of DICOM data sets; "
                                              "is the URL the DICOMweb root (often ending in /dicom-web)?")
        rows = []
        for item in items:
            try:
                ds = Dataset.from_json(item)
            except (ValueError, TypeError, KeyError) as exc:
                raise OperationFailed(self.label, f"QIDO-RS answered with a data set that is not DICOM JSON ({exc})") from None
            rows.append({key: as_text(ds.get(key)) for key in RETURN_KEYS[level]})
        return rows

    def instances(self, study_uid: str) -> list[Instance]:
        return [Instance(row["SeriesInstanceUID"], row["SOPInstanceUID"], row["SOPClassUID"])
                for row in self.search("IMAGE", Query(study_uid=study_uid))]

    # -- WADO-RS ---------------------------------------------------------------------------------
    def retrieve_instance(self, study_uid: str, series_uid: str, sop_uid: str) -> bytes:
        """One instance as a DICOM file (bytes), in its stored transfer syntax."""
        path = f"/studies/{study_uid}/series/{series_uid}/instances/{sop_uid}"
        _status, headers, body = self._request(
            f"WADO-RS of instance {short_uid(sop_uid)}", path,
            headers={"Accept": f"{DICOM_PART}; transfer-syntax=*"})
        parts = multipart_parts(headers.get("Content-Type", ""), body)
        if not parts:
            raise OperationFailed(self.label, f"WADO-RS of instance {short_uid(sop_uid)} returned no DICOM part")
        return parts[0]

    # -- STOW-RS ---------------------------------------------------------------------------------
    def store(self, sources: Sequence[str | Path | Dataset], progress: Progress | None = None,
              cancel: Cancel | None = None, per_request: int = 16) -> SendResult:
        """STOW-RS the files (folders are walked) or data sets, a few per request."""
        result = SendResult()
        items: list[tuple[str, bytes]] = []
        for source in sources:
            if isinstance(source, Dataset):
                buffer = DicomBytesIO()
                source.save_as(buffer, enforce_file_format=True)
                items.append((f"{source.SOPClassUID.name} {short_uid(source.SOPInstanceUID)}", buffer.getvalue()))
                continue
            for path in dicom_files([source]):
                try:
                    data = path.read_bytes()
                except OSError as exc:
                    result.failed.append((str(path), f"cannot read: {exc.strerror or exc}"))
                    continue
                if data[128:132] != b"DICM":
                    result.failed.append((str(path), "not a DICOM file (no DICM prefix)"))
                    continue
                items.append((str(path), data))
        for start in range(0, len(items), per_request):
            if cancel is not None and cancel():
                result.cancelled = True
                break
            self._store_batch(items[start:start + per_request], result)
            if progress is not None:
                progress(min(start + per_request, len(items)), len(items))
        return result

    def _store_batch(self, batch: list[tuple[str, bytes]], result: SendResult) -> None:
        boundary = uuid.uuid4().hex
        body = io.BytesIO()
        for _name, data in batch:
            body.write(f"--{boundary}\r\nContent-Type: application/dicom\r\n\r\n".encode("ascii"))
            body.write(data)
            body.write(b"\r\n")
        body.write(f"--{boundary}--\r\n".encode("ascii"))
        headers = {"Content-Type": f"{DICOM_PART}; boundary={boundary}", "Accept": "application/dicom+json"}
        try:
            _status, _h, answer = self._request("STOW-RS", "/studies", data=body.getvalue(), headers=headers,
                                                method="POST")
        except OperationFailed as exc:
            if exc.status in (400, 409, 415):  # the server refused this batch; the next may go
                result.failed += [(name, str(exc)) for name, _ in batch]
                return
            raise
        failed_uids = set()
        try:
            response = Dataset.from_json(json.loads(answer)) if answer.strip() else Dataset()
            for item in response.get("FailedSOPSequence", []):
                failed_uids.add(str(item.get("ReferencedSOPInstanceUID", "")))
        except ValueError:
            pass
        for name, data in batch:
            uid = _sop_uid(data)
            if uid in failed_uids:
                result.failed.append((name, f"{self.label} refused it (STOW-RS FailedSOPSequence)"))
            else:
                result.sent.append(name)


def _error_detail(body: bytes) -> str:
    """A short reason from an error body: a JSON "Message", else the first line of plain text."""
    text = body.decode("utf-8", "replace").strip()
    try:
        data = json.loads(text)
        if isinstance(data, dict) and data.get("Message"):
            return str(data["Message"])[:200]
    except ValueError:
        pass
    first = text.splitlines()[0] if text else ""
    return "" if "<" in first else first[:200]


def _sop_uid(data: bytes) -> str:
    try:
        return str(pydicom.dcmread(io.BytesIO(data), stop_before_pixels=True).SOPInstanceUID)
    except Exception:  # noqa: BLE001 - only used to match the server's answer
        return ""


def multipart_parts(content_type: str, body: bytes) -> list[bytes]:
    """The bodies of a multipart/related message (RFC 2387)."""
    message = Message()
    message["Content-Type"] = content_type
    boundary = message.get_param("boundary")
    if not boundary:
        return [body] if body[128:132] == b"DICM" else []
    delimiter = b"--" + str(boundary).encode("ascii")
    parts = []
    for chunk in body.split(delimiter)[1:]:
        if chunk.startswith(b"--"):
            break
        header_end = chunk.find(b"\r\n\r\n")
        if header_end < 0:
            continue
        content = chunk[header_end + 4:]
        if content.endswith(b"\r\n"):
            content = content[:-2]
        parts.append(content)
    return parts


def retrieve_study_web(client: DicomWebClient, study_uid: str, root: Path | None = None,
                       progress: Progress | None = None, cancel: Cancel | None = None) -> RetrieveResult:
    """WADO-RS the study into the cache, instance by instance, skipping what is already there."""
    root = Path(root) if root is not None else cache_root()
    folder = study_folder(root, study_uid)
    result = RetrieveResult(study_uid, folder, client.label)
    instances = client.instances(study_uid)
    if not instances:
        raise OperationFailed(client.label, f"has no instances of study {short_uid(study_uid)}")
    expected = {i.sop_instance_uid for i in instances}
    result.expected = len(expected)
    cached = cached_instances(folder)
    result.already_cached = len(expected & cached)
    present = result.already_cached
    if progress is not None:
        progress(present, result.expected)
    missing = [i for i in instances if i.sop_instance_uid not in cached]
    if missing:
        mark_incomplete(folder, result.expected, present, client.label)
    try:
        for instance in missing:
            if cancel is not None and cancel():
                result.cancelled = True
                break
            data = client.retrieve_instance(study_uid, instance.series_uid, instance.sop_instance_uid)
            try:
                ds = pydicom.dcmread(io.BytesIO(data), defer_size=256)
            except Exception as exc:  # noqa: BLE001 - a broken part must not lose the rest
                result.refused.append(f"instance {short_uid(instance.sop_instance_uid)} is not readable DICOM ({exc})")
                continue
            if str(ds.get("SOPInstanceUID", "")) != instance.sop_instance_uid:
                result.refused.append(f"asked for {short_uid(instance.sop_instance_uid)}, got another instance")
                continue
            viewable = any(k in ds for k in ("PixelData", "FloatPixelData", "DoubleFloatPixelData"))
            stored = store_encoded(root, data, study_uid, instance.sop_instance_uid, instance.sop_class_uid, viewable)
            result.received.append(stored)
            present += 1
            if progress is not None:
                progress(present, result.expected)
    except (OperationFailed, PacsUnreachable) as exc:
        result.error = str(exc)  # stopped part-way: keep what came
    return finish_retrieval(result, folder, expected, client.label)
