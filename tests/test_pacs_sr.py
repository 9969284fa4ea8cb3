"""AI results as DICOM: ``predict --sr-dir`` with the shipped model, read back by DCMTK's dsrdump
and by pydicom, then stored in Orthanc (C-STORE and STOW-RS) and found there."""

from __future__ import annotations

import csv
import subprocess
from pathlib import Path

import numpy as np
import pydicom
import pytest

from radreview import RESEARCH_USE_NOTICE
from radreview.cli import main

REPO = Path(__file__).resolve().parents[1]
LEG_DIR = REPO / "resources/demo/DEMO_LEG"  # a DICOMDIR: one study, two JPEG radiographs
JPEG = REPO / "resources/demo/jpeg/IMG0000025.jpg"  # no DICOM UIDs: no SR can reference it
LEG_FILES = sorted((LEG_DIR / "PT000000/ST000000/SE000000").iterdir())


@pytest.fixture(scope="module")
def predicted(tmp_path_factory):
    """One predict run (the shipped model) writing CSV, SRs and heatmap captures."""
    import contextlib
    import io

    out = tmp_path_factory.mktemp("predict")
    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        status = main(["predict", str(LEG_DIR), str(JPEG), "--out", str(out / "results.csv"), "--sr-dir",
                       str(out / "sr"), "--sr-heatmaps", "--identifiers", "--quiet", "--workers", "1"])
    assert status == 0, err.getvalue()
    return out, err.getvalue()


def _groups(sr: pydicom.Dataset) -> list[dict]:
    """The TID 1501 measurement groups of an SR: identifier, finding, probability, evaluations, image."""
    groups = []
    for container in sr.ContentSequence:
        if container.ConceptNameCodeSequence[0].CodeMeaning != "Imaging Measurements":
            continue
        for group in container.ContentSequence:
            found: dict = {"evaluations": {}}
            for item in group.ContentSequence:
                name = item.ConceptNameCodeSequence[0].CodeMeaning
                if item.ValueType == "TEXT" and name == "Tracking Identifier":
                    found["identifier"] = item.TextValue
                elif item.ValueType == "CODE" and name == "Finding":
                    found["finding"] = (item.ConceptCodeSequence[0].CodeValue, item.ConceptCodeSequence[0].CodingSchemeDesignator)
                elif item.ValueType == "CODE":
                    found["evaluations"][name] = item.ConceptCodeSequence[0].CodeValue
                elif item.ValueType == "NUM" and name == "Probability":
                    found["probability"] = float(item.MeasuredValueSequence[0].NumericValue)
                    found["unit"] = item.MeasuredValueSequence[0].MeasurementUnitsCodeSequence[0].CodeValue
                elif item.ValueType == "IMAGE":
                    found["image"] = item.ReferencedSOPSequence[0].ReferencedSOPInstanceUID
                elif item.ValueType == "TEXT" and name == "Algorithm Parameters":
                    found.setdefault("parameters", []).append(item.TextValue)
            groups.append(found)
    return groups


def test_predict_writes_one_sr_per_study_that_dsrdump_and_pydicom_read(predicted, dcmtk) -> None:
    out, err = predicted
    assert f"({JPEG.name}): cannot write a DICOM SR for it: it is not a DICOM file" in err
    assert "no SR written" in err
    srs = sorted((out / "sr").glob("*_SR.dcm"))
    assert len(srs) == 1  # the leg study; the JPEG's study has none
    dump = subprocess.run([dcmtk("dsrdump"), "+Pl", str(srs[0])], capture_output=True, text=True, timeout=60)
    assert dump.returncode == 0, dump.stderr  # strict reading: IOD and relationship constraints hold
    for text in ("Comprehensive SR Document", "Imaging Measurement Report", "(125605004,SCT,\"Fracture of bone\")",
                 "Probability", RESEARCH_USE_NOTICE, "(1,UCUM,\"no units\")"):
        assert text in dump.stdout, text

    sr = pydicom.dcmread(srs[0])
    source = pydicom.dcmread(LEG_FILES[0], stop_before_pixels=True)
    assert sr.SOPClassUID == "1.2.840.10008.5.1.4.1.1.88.33" and sr.Modality == "SR"
    assert (sr.PatientID, sr.PatientName, sr.StudyInstanceUID) == (source.PatientID, source.PatientName,
                                                                   source.StudyInstanceUID)
    assert sr.PreliminaryFlag == "PRELIMINARY" and sr.VerificationFlag == "UNVERIFIED"
    evidence = {item.ReferencedSOPInstanceUID for study in sr.CurrentRequestedProcedureEvidenceSequence
                for series in study.ReferencedSeriesSequence for item in series.ReferencedSOPSequence}
    leg_uids = {str(pydicom.dcmread(p, stop_before_pixels=True).SOPInstanceUID) for p in LEG_FILES}
    assert evidence == leg_uids

    groups = _groups(sr)
    rows = [r for r in csv.DictReader((out / "results.csv").open(encoding="utf-8")) if r["level"] == "image"]
    leg_rows = [r for r in rows if r["study_id"] == srs[0].name.split("_")[0]]
    labels = [g for g in groups if not g["identifier"].endswith("AI answer")]
    assert len(labels) == len(leg_rows) > 0  # one group per image and label
    by_key = {(g["image"], g["identifier"].split(" ", 2)[2]): g for g in labels}
    assert {r["sop_instance_uid"] for r in leg_rows} == leg_uids
    for row in leg_rows:
        group = by_key[(row["sop_instance_uid"], f"{row['model']}/{row['label']}")]
        if row["tier"] == "out_of_scope":  # no probability reported as an answer
            assert "probability" not in group and group["evaluations"]["AI operating-point tier"] == "out-of-scope"
        else:
            assert group["probability"] == pytest.approx(float(row["probability"]), abs=1e-6)
            assert group["unit"] == "1"
            assert group["evaluations"].get("AI operating-point tier", "") == row["tier"]
        assert any(RESEARCH_USE_NOTICE in p for p in group["parameters"])
        if row["task"] == "fracture":
            assert group["finding"] == ("125605004", "SCT")
    assert sum(1 for g in groups if "AI overall answer for the image" in g["evaluations"]) == len(LEG_FILES)


def test_heatmap_captures_carry_the_notice_burned_in(predicted) -> None:
    out, _ = predicted
    captures = sorted((out / "sr").glob("*_SC.dcm"))
    assert captures
    source = pydicom.dcmread(LEG_FILES[0], stop_before_pixels=True)
    for path in captures:
        sc = pydicom.dcmread(path)
        assert sc.SOPClassUID == "1.2.840.10008.5.1.4.1.1.7" and sc.BurnedInAnnotation == "YES"
        assert sc.PatientID == source.PatientID and RESEARCH_USE_NOTICE in sc.ImageComments
        pixels = sc.pixel_array
        band = pixels[: pixels.shape[0] // 30]
        yellow = (band[..., 0] > 200) & (band[..., 1] > 150) & (band[..., 2] < 80)
        assert yellow.any() and (band.sum(axis=2) == 0).mean() > 0.5  # yellow text on a black band
        assert sc.SourceImageSequence[0].ReferencedSOPInstanceUID in {
            str(pydicom.dcmread(p, stop_before_pixels=True).SOPInstanceUID) for p in LEG_FILES}
    assert np.asarray(pydicom.dcmread(captures[0]).pixel_array).dtype == np.uint8


def test_a_study_that_comes_back_with_its_captures_is_predicted_without_them(predicted, tmp_path) -> None:
    """Retrieved after its results were sent, a study holds radreview's heatmap captures: they are
    left out (and listed), not read as radiographs whose findings join the study's."""
    import json
    import shutil

    out, _ = predicted
    folder = tmp_path / "retrieved"
    folder.mkdir()
    for path in [*LEG_FILES, *sorted((out / "sr").glob("*_SC.dcm"))]:
        shutil.copy(path, folder / path.name)
    assert main(["predict", str(folder), "--out", str(tmp_path / "again.json"), "--quiet", "--workers", "1"]) == 0
    document = json.loads((tmp_path / "again.json").read_text())
    assert {row["image_id"] for row in document["images"]} == {"S00001-I001", "S00001-I002"}  # the two radiographs
    assert [row["views"] for row in document["studies"]][0] == 2
    captures = len(list((out / "sr").glob("*_SC.dcm")))
    assert sum("radreview's own heatmap capture" in p["reason"] for p in document["problems"]) == captures > 0


@pytest.mark.orthanc
def test_sr_and_captures_go_to_the_pacs_and_are_found_there(predicted, orthanc, tmp_path, monkeypatch) -> None:
    from radreview.pacs import PacsSettings, save_pacs_settings
    from radreview.pacs.dicomweb import DicomWebClient
    from radreview.pacs.find import Query, find
    from radreview.pacs.retrieve import retrieve_study
    from radreview.pacs.send import send

    out, _ = predicted
    monkeypatch.setenv("RADREVIEW_CONFIG_DIR", str(tmp_path / "config"))
    settings = PacsSettings()
    settings.local = orthanc.local()
    settings.put(orthanc.node("archive"))
    save_pacs_settings(settings)
    send(orthanc.node(), LEG_FILES, orthanc.move_aet)  # the images the SR describes are on the PACS
    assert main(["predict", str(LEG_DIR), "--out", str(tmp_path / "r.csv"), "--sr-dir", str(tmp_path / "sr"),
                 "--send", "archive", "--quiet", "--workers", "1"]) == 0
    sr = pydicom.dcmread(next((tmp_path / "sr").glob("*_SR.dcm")))
    study = str(sr.StudyInstanceUID)
    [row] = find(orthanc.node(), "STUDY", Query(study_uid=study), orthanc.move_aet)
    assert set(row["ModalitiesInStudy"].split("\\")) == {"DX", "SR"}
    series = find(orthanc.node(), "SERIES", Query(study_uid=study, modality="SR"), orthanc.move_aet)
    assert [s["SeriesInstanceUID"] for s in series] == [sr.SeriesInstanceUID]
    # the captures by STOW-RS, found by QIDO-RS
    web = DicomWebClient(orthanc.dicomweb)
    captures = sorted((out / "sr").glob("*_SC.dcm"))
    stored = web.store(captures)
    assert stored.failed == [] and len(stored.sent) == len(captures)
    found = {r["SOPInstanceUID"] for r in web.search("IMAGE", Query(study_uid=study))}
    assert {str(pydicom.dcmread(p, stop_before_pixels=True).SOPInstanceUID) for p in captures} <= found
    assert str(sr.SOPInstanceUID) in found
    # retrieved back, the SR is filed and reported as not viewable
    back = retrieve_study(orthanc.node(), study, "get", tmp_path / "cache", orthanc.local())
    assert back.complete and [o.sop_instance_uid for o in back.not_viewable] == [sr.SOPInstanceUID]


def test_send_without_sr_dir_or_with_an_unknown_node_is_refused(tmp_path, capsys) -> None:
    assert main(["predict", str(JPEG), "--out", str(tmp_path / "r.csv"), "--send", "archive"]) == 2
    assert "--sr-heatmaps and --send need --sr-dir" in capsys.readouterr().err
    assert main(["predict", str(JPEG), "--out", str(tmp_path / "r.csv"), "--sr-dir", str(tmp_path),
                 "--send", "nowhere"]) == 2
    assert "no PACS node named 'nowhere'" in capsys.readouterr().err
