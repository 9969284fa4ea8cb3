"""Crash safety and concurrency of saving reads, through real processes using the real API."""

from __future__ import annotations

import random
import subprocess
import sys
import time
from collections import Counter

import pytest
from _readerstudy_support import PIN, postgres_database
from sqlalchemy import text

from radreview.readerstudy.coordinator import Coordinator
from radreview.readerstudy.db import open_database
from radreview.readerstudy.design import CaseSpec, StudyDesign, add_reader, create_study
from radreview.readerstudy.design import AIOutputSpec
from radreview.readerstudy.reading import sign_in


def _study(db, n_cases: int, n_readers: int, mode: str) -> None:  # type: ignore[no-untyped-def]
    """Cases with placeholder image paths: reading here never opens an image."""
    cases = [CaseSpec(f"S{i:04d}", (f"/nonexistent/{i}.png",), i % 2) for i in range(n_cases)]
    ai = [AIOutputSpec(c.source_id, "m", 0.2 + 0.6 * c.truth) for c in cases] if mode != "unaided" else []
    study_id = create_study(db, StudyDesign("load", mode=mode, seed=2), cases, ai)
    for r in range(n_readers):
        add_reader(db, study_id, f"R{r}", PIN)


def _reader_process(url: str, reader: str, *extra: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "radreview.readerstudy.scripted_reader", "--db", url, "--study", "load",
         "--reader", reader, "--pin", PIN, *extra],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )


def _saved_lines(stdout: str) -> list[tuple[int, int, str]]:
    return [(int(a), int(b), c) for line in stdout.splitlines() if line.startswith("saved ")
            for a, b, c in [line.split()[1:4]]]


def _duplicates(db) -> int:  # type: ignore[no-untyped-def]
    with db.transaction(readonly=True) as session:
        return session.execute(text(
            "SELECT count(*) FROM (SELECT assignment_id, phase FROM reads "
            "GROUP BY assignment_id, phase HAVING count(*) > 1) d"
        )).scalar_one()


@pytest.mark.slow
def test_kill_9_at_random_points_loses_nothing_saved_and_resumes(tmp_path) -> None:
    url = str(tmp_path / "crash.db")
    db = open_database(url)
    _study(db, 100, 1, "sequential")
    reader = sign_in(db, "load", "R0", PIN)
    rng = random.Random(20)
    for kill in range(1, 21):
        expected_next = next(((a, missing[0]) for a, _, _, missing in reader.worklist() if missing), None)
        assert expected_next is not None, "the reader finished before 20 kills"
        process = _reader_process(url, "R0")
        # Let it save a random number of reads, then kill it a random moment later: often in
        # the middle of the next save's transaction.
        lines = [process.stdout.readline() for _ in range(rng.randint(1, 6))]
        time.sleep(rng.uniform(0.0, 0.012))
        process.kill()  # SIGKILL: no cleanup
        out, _ = process.communicate()
        saved = _saved_lines("".join(lines) + out)
        with db.transaction(readonly=True) as session:
            stored = {row[0]: (row[1], row[2]) for row in session.execute(
                text("SELECT id, assignment_id, phase FROM reads"))}
        for read_id, assignment_id, phase in saved:
            assert stored.get(read_id) == (assignment_id, phase), f"kill {kill}: read {read_id} lost"
        assert _duplicates(db) == 0
        assert saved and saved[0][1:] == expected_next, f"kill {kill}: did not resume at the next case"
    process = _reader_process(url, "R0")
    out, err = process.communicate(timeout=120)
    assert process.returncode == 0, err
    assert reader.current() is None and reader.progress().done == 100
    reads = Coordinator(db).reads()
    assert len(reads) == 200 and _duplicates(db) == 0
    db.close()


def _concurrent_readers(url: str) -> None:
    db = open_database(url)
    _study(db, 500, 8, "unaided")
    started = time.monotonic()
    processes = [_reader_process(url, f"R{r}", "--worklist") for r in range(8)]
    outputs = [p.communicate(timeout=600) for p in processes]
    for process, (_, err) in zip(processes, outputs):
        assert process.returncode == 0, err
    print(f"8 x 500 reads into {db.dialect}: {time.monotonic() - started:.1f} s")
    saved = [s for out, _ in outputs for s in _saved_lines(out)]
    assert len(saved) == 4000 and len({s[0] for s in saved}) == 4000
    reads = Coordinator(db).reads(all_revisions=True)
    assert len(reads) == 4000
    assert Counter(r["reader"] for r in reads) == {f"R{r}": 500 for r in range(8)}
    assert len({(r["reader"], r["case"]) for r in reads}) == 4000
    assert {r["read_id"] for r in reads} == {s[0] for s in saved}
    assert _duplicates(db) == 0
    db.close()


@pytest.mark.slow
def test_eight_readers_at_once_into_sqlite(tmp_path) -> None:
    _concurrent_readers(str(tmp_path / "shared.db"))


@pytest.mark.slow
@pytest.mark.postgres
def test_eight_readers_at_once_into_postgresql(request) -> None:
    _concurrent_readers(postgres_database(request))
