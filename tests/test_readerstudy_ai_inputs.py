"""The AI of a reader study: from predict's results or the models, a failed create leaving nothing,
sham cases that stay coherent, the migration, and the heatmap figures of the exports."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
from _reading_ai_support import PIN, STUDY, make_ai_study, write_cases, write_scoped_model

from radreview.cli import main
from radreview.readerstudy.coordinator import Coordinator
from radreview.readerstudy.db import creating_database, open_database
from radreview.readerstudy.heatmap_use import heatmap_use


@pytest.fixture(scope="module")
def models(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("scoped_models")
    write_scoped_model(folder)
    return folder


@pytest.fixture(scope="module")
def predicted(tmp_path_factory, models) -> Path:
    """Cases and predict's default JSON, once without a key (predictions.json) and once with one."""
    folder = tmp_path_factory.mktemp("predicted")
    write_cases(folder)
    assert main(["predict", str(folder / "images"), "--models", str(models), "--out",
                 str(folder / "nokey.json"), "--quiet"]) == 0
    assert main(["predict", str(folder / "images"), "--models", str(models), "--out",
                 str(folder / "predictions.json"), "--key", str(folder / "predictions-key.csv"), "--quiet"]) == 0
    return folder


def create(folder: Path, db: Path, *extra: str) -> int:
    return main(["study", "create", "--db", str(db), "--name", STUDY, "--cases", str(folder / "cases.csv"),
                 "--mode", "sequential", "--seed", "3", *extra])


def files(folder: Path) -> set[str]:
    return {p.name for p in folder.iterdir()}


def test_predict_output_makes_a_study_with_per_image_results(predicted, tmp_path) -> None:
    db_path = tmp_path / "study.sqlite"
    assert create(predicted, db_path, "--ai", str(predicted / "predictions.json")) == 0
    db = open_database(db_path, must_exist=True)
    coordinator = Coordinator(db)
    source = {c.code: c.source_id for c in coordinator.cases()}
    outputs = {source[o.case]: o for o in coordinator.ai_outputs()}
    assert set(outputs) == {"blob1", "blob2", "blob3", "blob4", "flat", "noise"}
    assert all(o.with_results and o.label == "fractured" for o in outputs.values())
    assert {k: (o.in_scope, o.tier) for k, o in outputs.items() if k in ("flat", "noise")} == \
           {"flat": (False, "out_of_scope"), "noise": (False, "out_of_scope")}
    assert all((o.in_scope, o.tier) == (True, "likely") for k, o in outputs.items() if k.startswith("blob"))
    db.close()


def test_study_create_runs_the_models_itself(predicted, models, tmp_path, capsys) -> None:
    db_path = tmp_path / "study.sqlite"
    assert create(predicted, db_path, "--model", str(models)) == 0
    assert "with tiers and heatmaps" in capsys.readouterr().out
    db = open_database(db_path, must_exist=True)
    via_models = {o.case: (o.probability, o.in_scope, o.tier) for o in Coordinator(db).ai_outputs()}
    db.close()
    assert create(predicted, tmp_path / "via_predict.sqlite", "--ai", str(predicted / "predictions.json")) == 0
    db = open_database(tmp_path / "via_predict.sqlite", must_exist=True)
    via_predict = {o.case: (o.probability, o.in_scope, o.tier) for o in Coordinator(db).ai_outputs()}
    db.close()
    assert via_models == via_predict  # the same engine, the same answers


@pytest.mark.parametrize("breakage", ["no key", "key gone", "image not predicted", "bad result", "no label"])
def test_a_failed_create_leaves_nothing_behind(predicted, tmp_path, capsys, breakage) -> None:
    work = tmp_path / "work"  # the results and key copied; the cases point at the images predict saw
    work.mkdir()
    for name in ("nokey.json", "predictions.json", "predictions-key.csv"):
        shutil.copy(predicted / name, work / name)
    (work / "cases.csv").write_text((predicted / "cases.csv").read_text().replace(
        "images/", f"{predicted / 'images'}/"))
    ai = work / "predictions.json"
    expected = {"no key": "pseudonymous IDs", "key gone": "cannot read the key",
                "image not predicted": "no AI output for 1 case/model pair", "bad result": "probability 7.0",
                "no label": "no model answers the label 'hardware'"}[breakage]
    extra: list[str] = []
    if breakage == "no key":
        ai = work / "nokey.json"
    elif breakage == "key gone":
        (work / "predictions-key.csv").unlink()
    elif breakage == "image not predicted":
        (work / "extra.png").write_bytes((predicted / "images" / "blob1.png").read_bytes())
        with (work / "cases.csv").open("a") as handle:
            handle.write("extra,extra.png,1\n")  # an image predict never saw
    elif breakage == "bad result":
        document = json.loads(ai.read_text())
        document["image_results"][0]["result"]["labels"][0]["probability"] = 7.0
        ai.write_text(json.dumps(document))
    else:
        extra = ["--ai-label", "hardware"]
    before = files(work)
    assert create(work, work / "study.sqlite", "--ai", str(ai), *extra) == 2
    err = capsys.readouterr().err
    assert expected in err and "nothing was written" in err, err
    assert files(work) == before  # no study file, no -wal/-shm/lock, no temporary


def test_creating_database_cleans_up_on_interrupt_and_keeps_an_existing_file(tmp_path) -> None:
    from radreview.readerstudy.design import CaseSpec, StudyDesign, StudyDesignError, create_study

    target = tmp_path / "study.sqlite"
    with pytest.raises(KeyboardInterrupt):
        with creating_database(target) as db:
            create_study(db, StudyDesign("a", mode="unaided", seed=1), [CaseSpec("x", ("x.png",), 1)])
            raise KeyboardInterrupt
    assert files(tmp_path) == set()
    with creating_database(target) as db:
        create_study(db, StudyDesign("a", mode="unaided", seed=1), [CaseSpec("x", ("x.png",), 1)])
    assert files(tmp_path) == {"study.sqlite"}
    size = target.stat().st_size
    with pytest.raises(StudyDesignError, match="already exists"):
        with creating_database(target) as db:  # an existing file: the failed study rolls back
            create_study(db, StudyDesign("a", mode="unaided", seed=1), [CaseSpec("y", ("y.png",), 0)])
    db = open_database(target, must_exist=True)
    assert [c.source_id for c in Coordinator(db).cases()] == ["x"]
    db.close()
    assert target.stat().st_size == size


def test_sham_cases_show_a_coherent_mirrored_ai(predicted) -> None:
    from radreview.gui.heatmap_overlay import heatmap_intensity
    from radreview.inference.serialize import image_from_dict
    from radreview.readerstudy.ai_inputs import read_ai_outputs, sham_payload
    from radreview.readerstudy.design import read_case_list

    cases = read_case_list(predicted / "cases.csv")
    outputs = {o.source_id: o for o in read_ai_outputs(predicted / "predictions.json", cases)}
    real = outputs["blob1"]
    shown, probability, tier = sham_payload(real.result)
    assert probability == pytest.approx(1 - real.probability) and tier == "likely"  # 1 - 0.15 >= 0.12
    before = image_from_dict(real.result["images"][0]["result"]).labels[0]
    after = image_from_dict(shown["images"][0]["result"]).labels[0]
    assert after.logit == pytest.approx(-before.logit) and after.tier == "likely"
    assert np.allclose(after.cam - before.cam, after.logit - before.logit)  # the map moves with the answer
    assert heatmap_intensity(after).max() >= heatmap_intensity(before).max()
    outside = sham_payload(outputs["flat"].result)[2]
    assert outside == "out_of_scope"  # a sham never brings an out-of-scope case into scope


def test_sham_study_stores_what_readers_see(predicted, tmp_path) -> None:
    from radreview.readerstudy.reading import sign_in

    db_path = tmp_path / "study.sqlite"
    assert create(predicted, db_path, "--ai", str(predicted / "predictions.json"), "--sham-share", "1.0") == 0
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("RADREVIEW_READER_PIN", PIN)
        assert main(["study", "add-reader", "--db", str(db_path), "--reader", "r1"]) == 0
    db = open_database(db_path, must_exist=True)
    reader = sign_in(db, STUDY, "r1", PIN)
    view = reader.current()
    assert view.ai == ()  # nothing of the AI before the unaided read is locked
    reader.save_read(view.assignment_id, "unaided", 1, confidence=60)
    view = reader.current()
    (ai,) = view.ai
    stored = next(o for o in Coordinator(db).ai_outputs() if o.case == view.case_code)
    assert ai.probability == pytest.approx(stored.shown_probability) and ai.tier == stored.shown_tier
    shown = ai.images[0]["labels"][0]["probability"]
    assert shown == pytest.approx(1 - stored.probability)
    db.close()


def test_migration_keeps_probability_only_outputs(tmp_path) -> None:
    from alembic import command
    from sqlalchemy import create_engine, text

    from radreview.readerstudy.db import HEAD_REVISION, _alembic_config, current_revision

    url = f"sqlite:///{tmp_path / 'old.sqlite'}"
    engine = create_engine(url)
    with engine.begin() as connection:
        command.upgrade(_alembic_config(connection), "0001")
        connection.execute(text("INSERT INTO studies (id, name, question, confidence_scale, mode, threshold, "
                                "washout_days, sham_share, seed, ai_models, settings, created_at) VALUES (1, 's', "
                                "'q', '0-100', 'aided', 50, 0, 0, 1, '[]', '{}', '2026-01-01')"))
        connection.execute(text("INSERT INTO cases (id, study_id, code, source_id, truth, position) "
                                "VALUES (1, 1, 'C001', 'a', 1, 0)"))
        connection.execute(text("INSERT INTO ai_outputs (case_id, model, label, probability, shown_probability, "
                                "sham) VALUES (1, 'm', 'fracture', 0.8, 0.8, 0)"))
    engine.dispose()
    db = open_database(tmp_path / "old.sqlite", must_exist=True)
    assert current_revision(db) == HEAD_REVISION
    (output,) = Coordinator(db).ai_outputs()
    assert (output.probability, output.in_scope, output.tier, output.with_results) == (0.8, None, "", False)
    db.close()


def test_heatmap_use_from_telemetry() -> None:
    events = [{"t_ms": 0, "kind": "ai_shown", "heatmap_available": True, "heatmap_visible": True},
              {"t_ms": 400, "kind": "heatmap", "visible": False, "by": "reader"},
              {"t_ms": 1000, "kind": "heatmap", "visible": True, "by": "reader"},
              {"t_ms": 1500, "kind": "heatmap", "visible": False, "available": False, "by": "image"}]
    assert heatmap_use(events, 3000) == {"heatmap_available": True, "heatmap_shown": True,
                                         "heatmap_shown_ms": 900, "heatmap_toggles": 2}
    off = [{"t_ms": 10, "kind": "ai_shown", "heatmap_available": True, "heatmap_visible": False}]
    assert heatmap_use(off, 500)["heatmap_shown"] is False and heatmap_use(off, 500)["heatmap_shown_ms"] == 0
    assert heatmap_use([], 500) == dict.fromkeys(("heatmap_available", "heatmap_shown", "heatmap_shown_ms",
                                                   "heatmap_toggles"))  # unknown, not "not shown"


def test_make_ai_study_helper_is_the_readme_order(tmp_path, models) -> None:
    db_path = make_ai_study(tmp_path, models)
    assert {"predictions.json", "predictions-key.csv", "study.sqlite", "cases.csv"} <= files(tmp_path)
    assert json.loads((tmp_path / "predictions.json").read_text())["key_file"] == "predictions-key.csv"
    assert os.path.getsize(db_path) > 0


def test_predict_csv_with_its_key_gives_probabilities_only(predicted, models, tmp_path, capsys) -> None:
    results, key = tmp_path / "results.csv", tmp_path / "key.csv"
    assert main(["predict", str(predicted / "images"), "--models", str(models), "--out", str(results),
                 "--key", str(key), "--quiet"]) == 0
    assert create(predicted, tmp_path / "no-key.sqlite", "--ai", str(results)) == 2
    assert "pseudonymous IDs" in capsys.readouterr().err and not (tmp_path / "no-key.sqlite").exists()
    assert create(predicted, tmp_path / "study.sqlite", "--ai", str(results), "--ai-key", str(key)) == 0
    db = open_database(tmp_path / "study.sqlite", must_exist=True)
    outputs = Coordinator(db).ai_outputs()
    assert len(outputs) == 6 and not any(o.with_results for o in outputs)
    db.close()


def test_the_ai_call_in_the_statistics_is_the_tier_readers_were_shown(predicted, tmp_path) -> None:
    """Readers see "Positive" for a likely tier whatever the study threshold: the AI's operating
    point and the agreement with the AI count that call, not probability x 100 >= threshold."""
    from radreview.readerstudy.stats import ai_call, compute_statistics

    assert (ai_call(0.49, "likely", 50), ai_call(0.55, "below", 50)) == (1, 0)
    assert (ai_call(0.2, "possible", 15), ai_call(0.2, "possible", 50), ai_call(0.7, "", 50)) == (1, 0, 1)
    db_path = tmp_path / "study.sqlite"
    assert create(predicted, db_path, "--ai", str(predicted / "predictions.json"), "--threshold", "99.9") == 0
    db = open_database(db_path, must_exist=True)
    coordinator = Coordinator(db)
    truth = {c.code: c.truth for c in coordinator.cases()}
    outputs = [o for o in coordinator.ai_outputs()]
    assert all(o.probability * 100 < 99.9 for o in outputs if o.tier == "likely")  # the threshold alone says no
    [ai] = [f for f in compute_statistics(coordinator).readers if f.is_ai]
    expected_tp = sum(1 for o in outputs if truth[o.case] == 1 and o.tier == "likely")
    assert expected_tp > 0 and ai.operating_point.counts.tp == expected_tp
    db.close()
