"""The PACS package without a PACS: saved nodes, the cache, retrieval plans, multipart bodies,
SR refusals, and what the failure messages say (with real sockets where a fault needs one)."""

from __future__ import annotations

import json
import logging
import socket
import threading
import warnings
from pathlib import Path

import pydicom
import pytest
from pydicom.data import get_testdata_file
from pynetdicom.pdu import A_ASSOCIATE_RJ

from radreview import RESEARCH_USE_NOTICE
from radreview.pacs import AssociationRejected, OperationFailed, PacsNode, PacsSettings, PacsUnreachable, SrError
from radreview.pacs.cache import (
    INCOMPLETE_MARKER,
    cached_instances,
    clear_incomplete,
    incomplete_info,
    mark_incomplete,
    store_dataset,
    study_folder,
)
from radreview.pacs.dicomweb import DicomWebClient, multipart_parts
from radreview.pacs.echo import echo
from radreview.pacs.find import Query, identifier
from radreview.pacs.listen import StorageListener
from radreview.pacs.nodes import load_pacs_settings, nodes_path, save_pacs_settings
from radreview.pacs.retrieve import Instance, plan_requests
from radreview.pacs.sr import SourceImage, build_sr, check_source


def test_nodes_round_trip_and_lookup(tmp_path) -> None:
    path = tmp_path / "pacs_nodes.json"
    settings = PacsSettings()
    settings.put(PacsNode("Main", "MAINPACS", "pacs.example", 104, "http://pacs.example/dicom-web"))
    settings.put(PacsNode("spare", "SPARE", "10.0.0.9", 11112))
    settings.local.ae_title = "WS1"
    save_pacs_settings(settings, path)
    loaded = load_pacs_settings(path)
    assert loaded == settings
    assert loaded.node("main").ae_title == "MAINPACS"  # names are case-insensitive
    with pytest.raises(KeyError, match="saved: Main, spare"):
        loaded.node("other")
    loaded.remove("SPARE")
    assert [n.name for n in loaded.nodes] == ["Main"]


def test_nodes_file_lives_in_the_config_dir() -> None:
    import os

    assert nodes_path().parent == Path(os.environ["RADREVIEW_CONFIG_DIR"])


@pytest.mark.parametrize(
    ("node", "problem"),
    [
        (PacsNode("a", "", "h", 104), "AE title cannot be empty"),
        (PacsNode("a", "X" * 17, "h", 104), "longer than 16"),
        (PacsNode("a", "BAD\\AE", "h", 104), "printable ASCII"),
        (PacsNode("a", "OK", "h", 0), "not a TCP port"),
        (PacsNode("a", "OK", " ", 104), "no host"),
        (PacsNode("a", "OK", "h", 104, "ftp://x"), "must start with http"),
    ],
)
def test_bad_nodes_are_refused_with_the_field_named(node, problem) -> None:
    with pytest.raises(ValueError, match=problem):
        node.validated()


def test_corrupt_or_odd_nodes_file_keeps_what_is_valid(tmp_path, caplog) -> None:
    path = tmp_path / "pacs_nodes.json"
    path.write_text("{not json", encoding="utf-8")
    with caplog.at_level(logging.WARNING):
        assert load_pacs_settings(path) == PacsSettings()
    assert path.with_name("pacs_nodes.json.corrupt").exists()
    path.write_text(json.dumps({"local": {"ae_title": "WS", "port": "many"},
                                "nodes": [{"name": "ok", "ae_title": "OK", "host": "h", "port": 104},
                                          {"name": "bad", "ae_title": "", "host": "h"}, 7]}), encoding="utf-8")
    with caplog.at_level(logging.WARNING):
        settings = load_pacs_settings(path)
    assert settings.local.ae_title == "WS" and settings.local.port == 11112
    assert [n.name for n in settings.nodes] == ["ok"]
    assert "bad" in caplog.text


def test_cache_files_atomically_and_never_overwrites(tmp_path) -> None:
    ds = pydicom.dcmread(get_testdata_file("RG3_UNCR.dcm"))
    stored = store_dataset(tmp_path, ds)
    assert stored.path == study_folder(tmp_path, ds.StudyInstanceUID) / f"{ds.SOPInstanceUID}.dcm"
    assert stored.viewable and not stored.already_cached
    before = stored.path.read_bytes()
    ds.PatientName = "Changed^Later"
    again = store_dataset(tmp_path, ds)
    assert again.already_cached and again.path.read_bytes() == before  # what was cached stays
    assert cached_instances(stored.path.parent) == {str(ds.SOPInstanceUID)}
    assert not [p for p in stored.path.parent.iterdir() if p.name.endswith(".partial")]
    assert pydicom.dcmread(stored.path).PixelData == pydicom.dcmread(get_testdata_file("RG3_UNCR.dcm")).PixelData


def test_cache_refuses_uids_that_are_not_uids(tmp_path) -> None:
    ds = pydicom.dcmread(get_testdata_file("RG3_UNCR.dcm"), stop_before_pixels=True)
    with warnings.catch_warnings():  # pydicom may warn about the bad value too
        warnings.simplefilter("ignore")
        ds.StudyInstanceUID = "../../etc"
    with pytest.raises(ValueError, match="Study Instance UID"):
        store_dataset(tmp_path, ds)
    ds.StudyInstanceUID = "1.2.3"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ds.SOPInstanceUID = "1.2/../3"
    with pytest.raises(ValueError, match="SOP Instance UID"):
        store_dataset(tmp_path, ds)
    assert list(tmp_path.iterdir()) == []


def test_incomplete_marker(tmp_path) -> None:
    folder = tmp_path / "1.2.3"
    mark_incomplete(folder, expected=5, received=2, source="MAIN (A@h:104)")
    info = incomplete_info(folder)
    assert info["expected"] == 5 and info["received"] == 2 and info["source"] == "MAIN (A@h:104)"
    assert (folder / INCOMPLETE_MARKER).exists() and cached_instances(folder) == set()
    clear_incomplete(folder)
    assert incomplete_info(folder) is None


def test_retrieval_plan_asks_only_for_what_is_missing() -> None:
    instances = [Instance("1.1", "1.1.1"), Instance("1.1", "1.1.2"), Instance("1.2", "1.2.1"), Instance("1.3", "1.3.1")]
    whole = plan_requests("1", instances, set())
    assert [(r.QueryRetrieveLevel, r.StudyInstanceUID) for r in whole] == [("STUDY", "1")]
    assert plan_requests("1", instances, {i.sop_instance_uid for i in instances}) == []
    resume = plan_requests("1", instances, {"1.1.1", "1.2.1"})
    assert [(r.QueryRetrieveLevel, r.SeriesInstanceUID) for r in resume] == [("IMAGE", "1.1"), ("SERIES", "1.3")]
    assert resume[0].SOPInstanceUID == "1.1.2"


def test_a_date_not_in_dicom_form_is_refused_not_matched_to_nothing() -> None:
    for good in ("20240102", "20240101-20240131", "20240101-", "-20240131"):
        assert Query(study_date=good).matching("STUDY")["StudyDate"] == good
    for bad in ("2024-01-02", "02/01/2024", "2024010"):
        with pytest.raises(ValueError, match="DICOM dates are YYYYMMDD"):
            Query(study_date=bad)


def test_query_identifiers() -> None:
    ds = identifier("STUDY", Query(patient_id="P*", study_date="20240101-20240131", modality="CR"))
    assert ds.QueryRetrieveLevel == "STUDY" and ds.PatientID == "P*" and ds.ModalitiesInStudy == "CR"
    assert ds.StudyDate == "20240101-20240131" and ds.StudyInstanceUID == "" and "AccessionNumber" in ds
    series = identifier("SERIES", Query(study_uid="1.2", modality="DX", patient_id="ignored"))
    assert series.StudyInstanceUID == "1.2" and series.Modality == "DX" and "PatientID" not in series
    with pytest.raises(ValueError, match="needs a study UID"):
        identifier("SERIES", Query())
    with pytest.raises(ValueError, match="must be one of"):
        identifier("WARD", Query())


def test_multipart_parts() -> None:
    body = (b"--XYZ\r\nContent-Type: application/dicom\r\n\r\nfirst\r\n"
            b"--XYZ\r\nContent-Type: application/dicom\r\n\r\nsec\r\nond\r\n--XYZ--\r\n")
    assert multipart_parts('multipart/related; type="application/dicom"; boundary=XYZ', body) == [b"first", b"sec\r\nond"]
    assert multipart_parts("multipart/related; boundary=\"XYZ\"", b"--XYZ--") == []


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_unreachable_node_is_named() -> None:
    node = PacsNode("ward", "WARDPACS", "127.0.0.1", _free_port())
    with pytest.raises(PacsUnreachable, match=r"^ward \(WARDPACS@127\.0\.0\.1:\d+\): unreachable: connection refused"):
        echo(node, timeout=5)
    with pytest.raises(PacsUnreachable, match="unknown"):
        echo(PacsNode("typo", "A", "no-such-host.invalid", 104), timeout=5)
    with pytest.raises(PacsUnreachable, match=r"http://127\.0\.0\.1:\d+/dicom-web: unreachable"):
        DicomWebClient(f"http://127.0.0.1:{_free_port()}/dicom-web", timeout=5).search()


def test_dicomweb_at_a_wrong_url_is_said_in_words() -> None:
    """A DICOM port (no HTTP at all) and a REST API that is not DICOMweb (Orthanc's root without
    /dicom-web answers a list of IDs): messages naming the URL, no traceback."""
    import http.server

    silent = socket.create_server(("127.0.0.1", 0))

    def hang_up() -> None:
        with silent:
            for _ in range(2):
                connection, _ = silent.accept()
                connection.recv(4096)
                connection.close()  # as a DICOM SCP does with an HTTP request

    threading.Thread(target=hang_up, daemon=True).start()
    with pytest.raises(PacsUnreachable, match=r"dicom-web: the connection broke off .*is this a DICOMweb URL\?"):
        DicomWebClient(f"http://127.0.0.1:{silent.getsockname()[1]}/dicom-web", timeout=5).search()

    class NotDicomWeb(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 - http.server naming
            body = b'["5f3e", "a12b"]'
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args) -> None:  # quiet
            pass

    server = http.server.HTTPServer(("127.0.0.1", 0), NotDicomWeb)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        with pytest.raises(OperationFailed, match=r"not a list of DICOM data sets; is the URL the DICOMweb root"):
            DicomWebClient(f"http://127.0.0.1:{server.server_port}", timeout=5).search()
    finally:
        server.shutdown()


def test_listener_rejects_a_wrong_called_ae_title(tmp_path) -> None:
    """Our own storage SCP as the peer: pynetdicom rejects a called AE title that is not its own."""
    with StorageListener("OURS", 0, "127.0.0.1", tmp_path) as listener:
        listener._server.ae.require_called_aet = True
        with pytest.raises(AssociationRejected, match=r"THEIRS@127\.0\.0\.1.*rejected.*Called AE title not recognised"):
            echo(PacsNode("", "THEIRS", "127.0.0.1", listener.port), timeout=5)
        assert echo(PacsNode("", "OURS", "127.0.0.1", listener.port), timeout=5) >= 0


def _rejecting_peer(attempts: int) -> tuple[int, threading.Thread]:
    """A peer that answers each association request with A-ASSOCIATE-RJ (called AE title not
    recognised) and closes at once, as Orthanc does: the shape that raced in pynetdicom 3.0."""
    server = socket.create_server(("127.0.0.1", 0))
    reject = A_ASSOCIATE_RJ()
    reject.result, reject.source, reject.reason_diagnostic = 0x01, 0x01, 0x07

    def serve() -> None:
        with server:
            for _ in range(attempts):
                connection, _ = server.accept()
                with connection:
                    connection.recv(65536)
                    connection.sendall(reject.encode())

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    return server.getsockname()[1], thread


def test_a_rejection_followed_by_a_close_is_a_rejection() -> None:
    """Every attempt is reported as the rejection it was, never as an abort or as unreachable
    (CI saw 'accepted the connection but not the association' when the close won the race)."""
    attempts = 40
    port, peer = _rejecting_peer(attempts)
    for _ in range(attempts):
        with pytest.raises(AssociationRejected, match=r"rejected: Called AE title not recognised \(is 'WRONG'"):
            echo(PacsNode("", "WRONG", "127.0.0.1", port), timeout=5)
    peer.join(timeout=10)


def test_sr_refuses_images_without_uids(tmp_path) -> None:
    with pytest.raises(SrError, match="IMG0000025.jpg: cannot write a DICOM SR for it: it is not a DICOM file"):
        check_source(None, "IMG0000025.jpg")
    ds = pydicom.dcmread(get_testdata_file("RG3_UNCR.dcm"), stop_before_pixels=True)
    del ds.SOPInstanceUID
    ds.StudyInstanceUID = ""
    with pytest.raises(SrError, match="S00001-I001: .*has no StudyInstanceUID, SOPInstanceUID"):
        build_sr([SourceImage(ds, None, "S00001-I001")])
    with pytest.raises(SrError, match="no image"):
        build_sr([])


def test_frozen_app_takes_the_pacs_libraries_along() -> None:
    """The installer (not built here) collects what pynetdicom and highdicom need at run time."""
    import importlib.util
    import sys

    from conftest import REPO_ROOT

    sys.path.insert(0, str(REPO_ROOT / "installer"))
    try:
        import bundle
    finally:
        sys.path.pop(0)
    assert {"pynetdicom", "highdicom"} <= set(bundle.METADATA_DISTRIBUTIONS)
    assert "highdicom" in bundle.DATA_PACKAGES
    assert not {"pynetdicom", "highdicom", "radreview.pacs"} & set(bundle.EXCLUDES)
    spec = (REPO_ROOT / "installer" / "radreview.spec").read_text(encoding="utf-8")
    assert "bundle.DATA_PACKAGES" in spec and 'collect_submodules("radreview"' in spec
    tables = Path(importlib.util.find_spec("highdicom").origin).parent / "_standard"
    assert (tables / "anatomic_regions.json").exists()


def _label(label: str, task: str, probability: float, tier: str, in_scope: bool | None):
    from radreview.inference.engine import LabelResult

    return LabelResult("toy-model", "2.0", label, label.title(), task, probability, 0.0, tier, 0.01, 0.5, None,
                       None, in_scope=in_scope, tier_in_scope="likely" if tier == "out_of_scope" else tier)


def _sr_groups(sr) -> dict[str, dict]:
    """Measurement groups by tracking identifier: concept name -> item, and "texts": every TEXT."""
    groups = {}
    for container in sr.ContentSequence:
        for group in getattr(container, "ContentSequence", []):
            items = {item.ConceptNameCodeSequence[0].CodeMeaning: item for item in group.ContentSequence}
            items["texts"] = [item.TextValue for item in group.ContentSequence if item.ValueType == "TEXT"]
            groups[items["Tracking Identifier"].TextValue] = items
    return groups


def test_sr_reports_what_the_presentation_shows() -> None:
    """In scope: probability, tier and Yes; outside the model's scope: no probability, the
    out-of-scope tier and No; the image's verdict in words as the presentation gives it."""
    from radreview.inference.engine import ImageResult
    from radreview.inference.presentation import present_image
    from radreview.inference.scope import ScopeVerdict

    ds = pydicom.dcmread(get_testdata_file("RG3_UNCR.dcm"), stop_before_pixels=True)
    inside = ImageResult([_label("fractured", "fracture", 0.93, "likely", True)],
                         scopes={"toy-model": ScopeVerdict("toy-model", "in_scope", 1.0, 2.0)})
    outside = ImageResult([_label("fractured", "fracture", 0.93, "out_of_scope", False)],
                          scopes={"toy-model": ScopeVerdict("toy-model", "out_of_scope", 3.0, 2.0)})
    for result, expect_probability, scope in ((inside, True, "Yes"), (outside, False, "No")):
        presentation = present_image(result)
        groups = _sr_groups(build_sr([SourceImage(ds, presentation, "RG3")]))
        finding = groups["image 1 toy-model/fractured"]
        assert ("Probability" in finding) is expect_probability
        if expect_probability:
            assert float(finding["Probability"].MeasuredValueSequence[0].NumericValue) == pytest.approx(0.93)
        assert finding["Image within the model's scope"].ConceptCodeSequence[0].CodeMeaning == scope
        tier = finding["AI operating-point tier"].ConceptCodeSequence[0].CodeValue
        assert tier == ("likely" if expect_probability else "out-of-scope")
        answer = groups["image 1 AI answer"]
        assert answer["AI overall answer for the image"].ConceptCodeSequence[0].CodeValue == (
            "positive" if expect_probability else "out-of-scope")
        assert f"answer: {presentation.verdict_text}" in answer["texts"]
        assert f"notice: {RESEARCH_USE_NOTICE}" in finding["texts"]


def test_listener_on_a_busy_port_says_so(tmp_path) -> None:
    from radreview.pacs import PacsError

    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        with pytest.raises(PacsError, match=rf"storage SCP RRTEST: cannot listen on 127\.0\.0\.1:{port}: .*radreview pacs listen"):
            StorageListener("RRTEST", port, "127.0.0.1", tmp_path).start()


def test_an_error_after_progress_starts_on_its_own_line(capsys) -> None:
    from radreview.commands import pacs as command

    command._progress("0/1 instances")
    command._say("orth (ORTHANC@127.0.0.1:4242): refused the C-MOVE")
    command._say("second")
    assert capsys.readouterr().err == ("\r  0/1 instances\nradreview pacs: orth (ORTHANC@127.0.0.1:4242): refused the "
                                       "C-MOVE\nradreview pacs: second\n")
