"""Shared helpers for the reader-study tests: a case list of real FracAtlas radiographs
(CC BY 4.0, Abedeen et al. 2023, see the data's README) and AI outputs for it.

The AI outputs are the study's input (what ``radreview predict`` would have written), generated
here with a fixed seed so that the statistics have something to measure.
"""

from __future__ import annotations

import csv
import random
from pathlib import Path

from radreview.readerstudy.coordinator import Coordinator
from radreview.readerstudy.db import Database
from radreview.readerstudy.design import (
    StudyDesign,
    add_reader,
    create_study,
    read_ai_outputs,
    read_case_list,
)

PIN = "2468"


def fracatlas_cases(fracatlas_dir: Path, n: int) -> list[tuple[str, Path, int]]:
    """``n`` cases, half fractured: (source id, image path, truth)."""
    rows = list(csv.DictReader((fracatlas_dir / "dataset.csv").open()))
    fractured = [r["image_id"] for r in rows if r["fractured"] == "1"][: n // 2]
    normal = [r["image_id"] for r in rows if r["fractured"] == "0"][: n - n // 2]
    cases = []
    for image_id, truth, folder in [(i, 1, "Fractured") for i in fractured] + [
        (i, 0, "Non_fractured") for i in normal
    ]:
        cases.append((f"FA-{image_id.removesuffix('.jpg')}", fracatlas_dir / "images" / folder / image_id, truth))
    return cases


def write_study_inputs(tmp: Path, fracatlas_dir: Path, n: int = 40, seed: int = 5) -> tuple[Path, Path]:
    """Write cases.csv and ai.csv under ``tmp``; return their paths."""
    rng = random.Random(seed)
    cases_csv, ai_csv = tmp / "cases.csv", tmp / "ai.csv"
    with cases_csv.open("w", newline="") as f, ai_csv.open("w", newline="") as g:
        cw, aw = csv.writer(f), csv.writer(g)
        cw.writerow(["case_id", "images", "truth", "side", "region"])
        aw.writerow(["case_id", "model", "label", "probability"])
        for source_id, image, truth in fracatlas_cases(fracatlas_dir, n):
            cw.writerow([source_id, str(image), truth, rng.choice(["L", "R"]), "leg"])
            p = min(0.99, max(0.01, rng.gauss(0.68 if truth else 0.32, 0.18)))
            aw.writerow([source_id, "fracture-net", "fracture", f"{p:.4f}"])
    return cases_csv, ai_csv


def make_study(db: Database, tmp: Path, fracatlas_dir: Path, *, readers: int = 3, n: int = 40,
               mode: str = "sequential", name: str = "wrist-2026", **design) -> Coordinator:  # type: ignore[no-untyped-def]
    cases_csv, ai_csv = write_study_inputs(tmp, fracatlas_dir, n)
    cases = read_case_list(cases_csv)
    ai = read_ai_outputs(ai_csv, cases) if mode != "unaided" else []
    study_id = create_study(db, StudyDesign(name, mode=mode, seed=11, **design), cases, ai)
    for i in range(readers):
        add_reader(db, study_id, f"R{i + 1}", PIN)
    return Coordinator(db, name)


def answer_key(coordinator: Coordinator, reader: str, skill: float = 1.0) -> dict[str, float]:
    """Simulated unaided confidences (0-100) for one reader: noisy but better than chance."""
    rng = random.Random(f"{reader}-answers")
    key = {}
    for case in coordinator.cases():
        mean = 50 + (18 * skill if case.truth else -18 * skill)
        key[case.code] = round(min(100.0, max(0.0, rng.gauss(mean, 22))), 1)
    return key


def postgres_database(request) -> str:  # type: ignore[no-untyped-def]
    """A fresh, empty PostgreSQL database on the test server (dropped after the test).

    The server is the session's ``postgres_url`` (tests/_postgres.py: the configured one, or a
    throwaway one it starts; it skips, or fails under CI, with the reason when there is none).
    """
    import uuid

    from sqlalchemy import create_engine, text
    from sqlalchemy.engine import make_url

    base = request.getfixturevalue("postgres_url")
    name = f"rs_{uuid.uuid4().hex[:12]}"
    admin = create_engine(base, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))

    def drop() -> None:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()

    request.addfinalizer(drop)
    return make_url(base).set(database=name).render_as_string(hide_password=False)
