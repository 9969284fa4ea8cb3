"""Round trips with a real PACS (Orthanc) and DCMTK as the independent peer: send, find, retrieve
by C-GET, C-MOVE and WADO-RS with pixel data identical; and the faults, each with its message."""

from __future__ import annotations

import csv
import re
import subprocess
import sys
from pathlib import Path

import deid_data
import pydicom
import pytest
from pydicom.data import get_testdata_file

from radreview.pacs import AssociationRejected, MoveDestinationUnknown, OperationFailed, PacsError
from radreview.pacs.cache import INCOMPLETE_MARKER, incomplete_info
from radreview.pacs.dicomweb import DicomWebClient, retrieve_study_web
from radreview.pacs.echo import echo
from radreview.pacs.find import Query, find
from radreview.pacs.listen import StorageListener
from radreview.pacs.retrieve import retrieve_study
from radreview.pacs.send import send

pytestmark = pytest.mark.orthanc

REPO = Path(__file__).resolve().parents[1]
LEG = sorted((REPO / "resources/demo/DEMO_LEG/PT000000/ST000000/SE000000").iterdir())  # 2 JPEG instances
COOKIES = sorted((Path(deid_data.__file__).parent / "data/dicom-cookies").glob("image[123].dcm"))
LEG_STUDY = str(pydicom.dcmread(LEG[0], stop_before_pixels=True).StudyInstanceUID)
RG3 = Path(get_testdata_file("RG3_UNCR.dcm"))
SR_FILE = Path(get_testdata_file("test-SR.dcm"))


def _same_object(original: Path, received: Path) -> None:
    a, b = pydicom.dcmread(original), pydicom.dcmread(received)
    assert b.SOPInstanceUID == a.SOPInstanceUID
    assert b.file_meta.TransferSyntaxUID == a.file_meta.TransferSyntaxUID  # nothing transcoded
    assert b.PixelData == a.PixelData  # identical pixel data, byte for byte


def _storescu(dcmtk, orthanc, files) -> None:
    done = subprocess.run([dcmtk("storescu"), "-xy", "-aet", "DCMTK", "-aec", orthanc.aet, orthanc.host,
                           str(orthanc.port), *map(str, files)], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr


def test_send_find_and_retrieve_by_get_move_and_wado(orthanc, dcmtk, tmp_path) -> None:
    node, local = orthanc.node(), orthanc.local()
    assert echo(node, local.ae_title) > 0
    sent = send(node, [RG3, *LEG], local.ae_title)
    assert sent.failed == [] and len(sent.sent) == 3
    _storescu(dcmtk, orthanc, COOKIES)  # the independent peer stores too

    studies = find(node, "STUDY", Query(), local.ae_title)
    by_uid = {row["StudyInstanceUID"]: row for row in studies}
    assert len(by_uid) == 5
    leg = by_uid[LEG_STUDY]
    assert leg["PatientID"] == "DEMO-0002" and leg["ModalitiesInStudy"] == "DX"
    assert leg["NumberOfStudyRelatedInstances"] == "2"
    # DCMTK's findscu sees the same studies
    found = subprocess.run([dcmtk("findscu"), "-S", "-aet", "DCMTK", "-aec", orthanc.aet, "-k", "QueryRetrieveLevel=STUDY",
                            "-k", "StudyInstanceUID", orthanc.host, str(orthanc.port)],
                           capture_output=True, text=True, timeout=60)
    assert set(re.findall(r"\(0020,000d\) UI \[([0-9.]+)", found.stdout + found.stderr)) == set(by_uid)
    # matching keys: patient ID wildcard, modality, date range, accession, level below the study
    assert [r["PatientID"] for r in find(node, "STUDY", Query(patient_id="cookie*"), local.ae_title)] == ["cookie-47"] * 3
    assert [r["PatientID"] for r in find(node, "STUDY", Query(modality="CR"), local.ae_title)] == ["11RG3"]
    assert [r["PatientID"] for r in find(node, "STUDY", Query(study_date="20040101-20041231"), local.ae_title)] == ["11RG3"]
    assert [r["AccessionNumber"] for r in find(node, "STUDY", Query(accession_number="DEMO0002"), local.ae_title)] == ["DEMO0002"]
    assert [r["PatientID"] for r in find(node, "PATIENT", Query(patient_name="DEMO^*"), local.ae_title)] == ["DEMO-0002"]
    series = find(node, "SERIES", Query(study_uid=LEG_STUDY), local.ae_title)
    assert [(s["Modality"], s["NumberOfSeriesRelatedInstances"]) for s in series] == [("DX", "2")]
    assert len(find(node, "STUDY", Query(), local.ae_title, limit=2)) == 2

    for method in ("get", "move"):
        root = tmp_path / method
        result = retrieve_study(node, LEG_STUDY, method, root, local)
        assert result.complete and len(result.received) == 2 and result.not_viewable == []
        assert not (result.folder / INCOMPLETE_MARKER).exists()
        for original in LEG:
            _same_object(original, result.folder / f"{pydicom.dcmread(original).SOPInstanceUID}.dcm")
    web = DicomWebClient(orthanc.dicomweb, name="orthanc-web")
    result = retrieve_study_web(web, LEG_STUDY, tmp_path / "wado")
    assert result.complete and len(result.received) == 2
    for original in LEG:
        _same_object(original, result.folder / f"{pydicom.dcmread(original).SOPInstanceUID}.dcm")
    rg3 = retrieve_study(node, str(pydicom.dcmread(RG3).StudyInstanceUID), "get", tmp_path / "rg3", local)
    _same_object(RG3, rg3.received[0].path)
    assert {r["StudyInstanceUID"] for r in web.search("STUDY")} == set(by_uid)
    # QIDO-RS matches as C-FIND does: wildcards and the included fields reach Orthanc unencoded
    web_leg = web.search("STUDY", Query(patient_name="DEMO^L*"))
    dimse_leg = find(node, "STUDY", Query(patient_name="DEMO^L*"), local.ae_title)
    assert [r["StudyInstanceUID"] for r in web_leg] == [r["StudyInstanceUID"] for r in dimse_leg] == [LEG_STUDY]
    assert web_leg[0]["StudyDescription"] == dimse_leg[0]["StudyDescription"] != ""


def test_find_csv_neutralises_formulas_from_the_pacs(orthanc, tmp_path) -> None:
    """A description "=HYPERLINK(...)" typed at the modality must not run when the CSV is opened."""
    from radreview.cli import main

    ds = pydicom.dcmread(RG3)
    ds.StudyInstanceUID, ds.SeriesInstanceUID = pydicom.uid.generate_uid(), pydicom.uid.generate_uid()
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = pydicom.uid.generate_uid()
    ds.PatientID, ds.StudyDescription = "INJ-1", '=HYPERLINK("http://evil.example/x","click")'
    ds.save_as(tmp_path / "injected.dcm")
    send(orthanc.node(), [tmp_path / "injected.dcm"], orthanc.move_aet)
    out = tmp_path / "matches.csv"
    assert main(["pacs", "find", "--host", orthanc.host, "--port", str(orthanc.port), "--called-aet", orthanc.aet,
                 "--aet", orthanc.move_aet, "--patient-id", "INJ-1", "--out", str(out)]) == 0
    [row] = list(csv.DictReader(out.open(encoding="utf-8")))
    assert row["StudyDescription"] == "\'=HYPERLINK(\"http://evil.example/x\",\"click\")"


def test_send_with_dicomweb_before_the_paths(orthanc, tmp_path, monkeypatch) -> None:
    """`pacs send --node N --dicomweb FILE` (the order the docs show): the file is sent by STOW-RS,
    not taken for the URL."""
    from radreview.cli import main

    monkeypatch.setenv("RADREVIEW_CONFIG_DIR", str(tmp_path / "config"))
    assert main(["pacs", "node", "add", "main", "--host", orthanc.host, "--port", str(orthanc.port),
                 "--called-aet", orthanc.aet, "--dicomweb", orthanc.dicomweb]) == 0
    assert main(["pacs", "send", "--node", "main", "--dicomweb", str(RG3)]) == 0
    assert str(pydicom.dcmread(RG3, stop_before_pixels=True).SOPInstanceUID) in orthanc.instance_uids()
    assert main(["pacs", "send", "--node", "main", "--dicomweb"]) == 2  # no path at all: said, not sent


def test_find_csv_and_get_through_the_command(orthanc, tmp_path, capsys, monkeypatch) -> None:
    from radreview.cli import main

    monkeypatch.setenv("RADREVIEW_CONFIG_DIR", str(tmp_path / "config"))  # the saved nodes of this test only

    send(orthanc.node(), [*LEG, RG3], orthanc.move_aet)
    common = ["--host", orthanc.host, "--port", str(orthanc.port), "--called-aet", orthanc.aet, "--aet", orthanc.move_aet]
    out = tmp_path / "matches.csv"
    assert main(["pacs", "find", *common, "--modality", "DX", "--out", str(out)]) == 0
    rows = list(csv.DictReader(out.open(encoding="utf-8")))
    assert [r["StudyInstanceUID"] for r in rows] == [LEG_STUDY]
    assert list(rows[0])[:6] == ["StudyInstanceUID", "PatientID", "PatientName", "PatientBirthDate", "PatientSex", "StudyDate"]
    assert rows[0]["ModalitiesInStudy"] == "DX" and rows[0]["StudyDate"] == "20240102"
    assert "DEMO^LEG" in capsys.readouterr().out  # the table the user asked for
    # a saved node, then get into --out
    assert main(["pacs", "node", "add", "main", "--host", orthanc.host, "--port", str(orthanc.port),
                 "--called-aet", orthanc.aet, "--dicomweb", orthanc.dicomweb]) == 0
    assert main(["pacs", "node", "set-local", "--aet", orthanc.move_aet, "--port", str(orthanc.move_port)]) == 0
    assert main(["pacs", "get", "--node", "main", "--study-uid", LEG_STUDY, "--out", str(tmp_path / "got")]) == 0
    assert len(list((tmp_path / "got" / LEG_STUDY).glob("*.dcm"))) == 2
    assert main(["pacs", "move", "--node", "main", "--study-uid", LEG_STUDY, "--out", str(tmp_path / "moved")]) == 0
    assert main(["pacs", "get", "--node", "main", "--dicomweb", "--study-uid", LEG_STUDY, "--out", str(tmp_path / "web")]) == 0
    assert len(list((tmp_path / "web" / LEG_STUDY).glob("*.dcm"))) == 2
    capsys.readouterr()
    assert main(["pacs", "echo", "--node", "main", "--called-aet", "NOT_ORTHANC"]) == 1
    assert "main (NOT_ORTHANC@" in capsys.readouterr().err


def test_wrong_called_ae_title_is_rejected_by_the_pacs(orthanc) -> None:
    node = orthanc.node("ward", ae_title="NOT_ORTHANC")
    with pytest.raises(AssociationRejected) as caught:
        echo(node, orthanc.move_aet)
    assert str(caught.value).startswith(f"ward (NOT_ORTHANC@{orthanc.host}:{orthanc.port}): association rejected")
    assert "Called AE title not recognised" in str(caught.value) and "'NOT_ORTHANC'" in str(caught.value)


def test_unknown_calling_ae_title_gets_a_message(orthanc) -> None:
    with pytest.raises(OperationFailed, match=r"test-orthanc \(ORTHANC@.*C-FIND.*our AE title 'STRANGER'"):
        find(orthanc.node(), "STUDY", Query(), "STRANGER", timeout=20)


def test_unknown_move_destination(orthanc, tmp_path) -> None:
    send(orthanc.node(), LEG, orthanc.move_aet)
    with pytest.raises(MoveDestinationUnknown) as caught:
        retrieve_study(orthanc.node(), LEG_STUDY, "move", tmp_path, orthanc.local(), destination="NOWHERE")
    assert str(caught.value).startswith("test-orthanc (ORTHANC@") and "'NOWHERE'" in str(caught.value)
    assert "C-GET needs no registration" in str(caught.value)
    assert not (tmp_path / LEG_STUDY).exists()  # no folder left for a study that never came


@pytest.mark.parametrize("method", ["get", "move", "wado"])
def test_transfer_stopped_half_way_keeps_what_came_and_resumes(orthanc, tmp_path, method) -> None:
    node, local = orthanc.node(), orthanc.local()
    send(node, LEG, local.ae_title)
    received = []

    def retrieve(cancel=None):
        progress = lambda done, total: received.append((done, total))  # noqa: E731
        if method == "wado":
            return retrieve_study_web(DicomWebClient(orthanc.dicomweb), LEG_STUDY, tmp_path, progress, cancel)
        return retrieve_study(node, LEG_STUDY, method, tmp_path, local, progress, cancel)

    # stop once the first instance is in: the transfer ends half-way
    first = retrieve(cancel=lambda: any(done >= 1 for done, _ in received))
    assert not first.complete and first.missing == 1 and len(first.received) == 1
    kept = first.received[0].path
    kept_bytes, kept_mtime = kept.read_bytes(), kept.stat().st_mtime_ns
    info = incomplete_info(first.folder)
    assert info is not None and info["expected"] == 2 and info["received"] == 1
    assert info["source"] == first.source and "DEMO" not in (first.folder / INCOMPLETE_MARKER).read_text()
    assert "missing" in first.summary() and "incomplete" in first.summary()
    # the retry fetches only the missing instance; what was cached is untouched
    received.clear()
    second = retrieve()
    assert second.complete and second.already_cached == 1 and len(second.received) == 1
    assert second.received[0].sop_instance_uid != first.received[0].sop_instance_uid
    assert kept.read_bytes() == kept_bytes and kept.stat().st_mtime_ns == kept_mtime
    assert incomplete_info(second.folder) is None
    assert received[0] == (1, 2) and received[-1] == (2, 2)
    for original in LEG:
        _same_object(original, second.folder / f"{pydicom.dcmread(original).SOPInstanceUID}.dcm")
    # a third try has nothing to fetch
    third = retrieve()
    assert third.complete and third.received == [] and third.already_cached == 2


def test_received_object_that_is_not_an_image(orthanc, tmp_path) -> None:
    from radreview.studies import index_paths

    send(orthanc.node(), [SR_FILE], orthanc.move_aet)
    study = str(pydicom.dcmread(SR_FILE, stop_before_pixels=True).StudyInstanceUID)
    result = retrieve_study(orthanc.node(), study, "get", tmp_path, orthanc.local())
    assert result.complete and len(result.not_viewable) == 1
    assert result.not_viewable[0].path.exists() and "1 not viewable" in result.summary()
    index = index_paths([result.folder])  # the viewer opening the folder: no image, a problem, no crash
    assert index.images() == [] and len(index.problems) == 1


def test_dcmtk_storescu_into_our_listener(dcmtk, tmp_path) -> None:
    """Our storage SCP with DCMTK as the sender; a second send of the same files keeps the first."""
    filed = []
    with StorageListener("RRLISTEN", 0, "127.0.0.1", tmp_path, on_stored=filed.append) as listener:
        for _ in range(2):
            done = subprocess.run([dcmtk("storescu"), "-xy", "-aet", "DCMTK", "-aec", "RRLISTEN", "127.0.0.1",
                                   str(listener.port), *map(str, LEG), str(SR_FILE)],
                                  capture_output=True, text=True, timeout=60)
            assert done.returncode == 0, done.stderr
    assert len(filed) == 6 and [f.already_cached for f in filed] == [False] * 3 + [True] * 3
    assert [f.viewable for f in filed[:3]] == [True, True, False]
    for original in LEG:
        _same_object(original, tmp_path / LEG_STUDY / f"{pydicom.dcmread(original).SOPInstanceUID}.dcm")


def test_listen_command_with_storescu(dcmtk, tmp_path) -> None:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    command = [sys.executable, "-c", "import sys; from radreview.cli import main; sys.exit(main())", "pacs", "listen",
               "--aet", "RRLISTEN", "--port", str(port), "--bind", "127.0.0.1", "--out", str(tmp_path), "--count", "2"]
    listener = subprocess.Popen(command, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert "storage SCP RRLISTEN on port" in listener.stdout.readline()
        done = subprocess.run([dcmtk("storescu"), "-xy", "-aet", "DCMTK", "-aec", "RRLISTEN", "127.0.0.1", str(port),
                               *map(str, LEG)], capture_output=True, text=True, timeout=60)
        assert done.returncode == 0, done.stderr
        out, err = listener.communicate(timeout=60)
    finally:
        if listener.poll() is None:
            listener.kill()
    assert listener.returncode == 0, err
    assert out.count("filed ") == 2 and "2 object(s) filed" in err
    assert "DEMO" not in out + err  # no patient data in what the listener says


def test_dicomweb_store_and_errors(orthanc, tmp_path) -> None:
    web = DicomWebClient(orthanc.dicomweb, name="web")
    stored = web.store([RG3, tmp_path])  # an empty folder adds nothing
    assert stored.sent == [str(RG3)] and stored.failed == []
    (tmp_path / "note.txt").write_text("not DICOM")
    refused = web.store([tmp_path / "note.txt"])
    assert refused.sent == [] and "not a DICOM file" in refused.failed[0][1]
    assert str(pydicom.dcmread(RG3).SOPInstanceUID) in orthanc.instance_uids()
    with pytest.raises(OperationFailed, match=r"^web \(http.*\): WADO-RS of instance .* failed: HTTP 404"):
        web.retrieve_instance("1.2.3", "1.2.3.4", "1.2.3.4.5")
    with pytest.raises(PacsError, match="has no instances"):
        retrieve_study_web(web, "1.2.3.4", tmp_path)


def test_no_patient_data_in_the_log(orthanc, tmp_path, caplog) -> None:
    """Everything at debug level: UIDs shortened, node labels, counts; never a name or an ID."""
    import logging

    node, local = orthanc.node(), orthanc.local()
    with caplog.at_level(logging.DEBUG):
        send(node, LEG, local.ae_title)
        find(node, "STUDY", Query(patient_id="DEMO*"), local.ae_title)
        retrieve_study(node, LEG_STUDY, "get", tmp_path / "g", local)
        retrieve_study(node, LEG_STUDY, "move", tmp_path / "m", local)
        retrieve_study_web(DicomWebClient(orthanc.dicomweb), LEG_STUDY, tmp_path / "w")
    assert caplog.records  # it did log
    for secret in ("DEMO^LEG", "DEMO-0002", "DEMO0002", LEG_STUDY):
        assert secret not in caplog.text
