"""Reader-study save throughput: committed reads per second, against a same-run baseline.

Baseline: plain ``sqlite3`` inserting one row per committed transaction with the same pragmas
(WAL, synchronous=FULL), i.e. the cost of the fsync alone. Then radreview's full save path
(checks, append-only row, audit entry, one transaction) for one reader, and for 8 reader
processes at once. With RADREVIEW_TEST_POSTGRES_URL set, the same on PostgreSQL.

    .venv/bin/python tests/benchmarks/bench_readerstudy.py
"""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

from radreview.readerstudy.db import open_database
from radreview.readerstudy.design import CaseSpec, StudyDesign, add_reader, create_study
from radreview.readerstudy.reading import sign_in
from radreview.readerstudy.scripted_reader import read_worklist

N_CASES = 300
PIN = "482916"


def baseline_sqlite(folder: Path, n: int) -> float:
    connection = sqlite3.connect(folder / "baseline.db", isolation_level=None)
    connection.execute("PRAGMA journal_mode = WAL")
    connection.execute("PRAGMA synchronous = FULL")
    connection.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, token TEXT UNIQUE, value REAL)")
    start = time.perf_counter()
    for i in range(n):
        connection.execute("BEGIN IMMEDIATE")
        connection.execute("INSERT INTO t (token, value) VALUES (?, ?)", (uuid.uuid4().hex, i))
        connection.execute("COMMIT")
    connection.close()
    return n / (time.perf_counter() - start)


def make_study(url: str, readers: int) -> None:
    db = open_database(url)
    cases = [CaseSpec(f"B{i}", (f"/nonexistent/{i}.png",), i % 2) for i in range(N_CASES)]
    study_id = create_study(db, StudyDesign("bench", mode="unaided", seed=1), cases)
    for r in range(readers):
        add_reader(db, study_id, f"R{r}", PIN)
    db.close()


def one_reader(url: str) -> float:
    make_study(url, 1)
    db = open_database(url)
    reader = sign_in(db, "bench", "R0", PIN)
    start = time.perf_counter()
    saved = read_worklist(reader)
    rate = saved / (time.perf_counter() - start)
    db.close()
    return rate


def eight_readers(url: str) -> float:
    make_study(url, 8)
    start = time.perf_counter()
    processes = [
        subprocess.Popen([sys.executable, "-m", "radreview.readerstudy.scripted_reader", "--db", url,
                          "--study", "bench", "--reader", f"R{r}", "--pin", PIN, "--worklist"],
                         stdout=subprocess.DEVNULL)
        for r in range(8)
    ]
    for process in processes:
        process.wait()
    return 8 * N_CASES / (time.perf_counter() - start)


def fresh_postgres(base: str) -> str:
    from sqlalchemy import create_engine, text
    from sqlalchemy.engine import make_url

    name = f"bench_{uuid.uuid4().hex[:8]}"
    with create_engine(base, isolation_level="AUTOCOMMIT").connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    return make_url(base).set(database=name).render_as_string(hide_password=False)


def main() -> int:
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        base = baseline_sqlite(folder, N_CASES)
        print(f"baseline sqlite3 insert+commit (WAL, synchronous=FULL): {base:8.1f} commits/s")
        single = one_reader(str(folder / "one.db"))
        print(f"radreview save, 1 reader, SQLite:      {single:8.1f} reads/s  ({single / base:.2f} x baseline)")
        many = eight_readers(str(folder / "eight.db"))
        print(f"radreview save, 8 processes, SQLite:   {many:8.1f} reads/s  ({many / base:.2f} x baseline)")
    url = os.environ.get("RADREVIEW_TEST_POSTGRES_URL")
    if url:
        single = one_reader(fresh_postgres(url))
        print(f"radreview save, 1 reader, PostgreSQL:  {single:8.1f} reads/s  ({single / base:.2f} x baseline)")
        many = eight_readers(fresh_postgres(url))
        print(f"radreview save, 8 processes, PostgreSQL: {many:6.1f} reads/s  ({many / base:.2f} x baseline)")
    else:
        print("PostgreSQL skipped: RADREVIEW_TEST_POSTGRES_URL is not set (scripts/start_test_postgres.sh)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
