"""A scripted reader: signs in and reads the assigned cases through the real reading API.

Used to rehearse a study before real readers start (load on a shared PostgreSQL server, the
exports end to end), by the crash and concurrency tests, and by the GUI test, which clicks the
same answers that :func:`scripted_answer` gives here so both paths must produce the same exports.

Run as ``python -m radreview.readerstudy.scripted_reader --db DB --study NAME --reader R --pin P``.
Each committed save prints ``saved <read id> <assignment id> <phase>`` on stdout (flushed), so a
parent process knows what was durably saved before it kills this one.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
from dataclasses import dataclass
from pathlib import Path

from radreview.readerstudy.db import open_database
from radreview.readerstudy.reading import CaseView, ReaderSession, WashoutPending, sign_in
from radreview.readerstudy.stats import ai_call


@dataclass(frozen=True)
class Answer:
    decision: int
    confidence: float
    rating: int
    ai_agreement: str | None
    comment: str


def _hashed_confidence(reader: str, case: str) -> float:
    """A reproducible pseudo-random confidence for readers without an answer key."""
    digest = hashlib.sha256(f"{reader}/{case}".encode()).digest()
    return round(int.from_bytes(digest[:4], "big") / 2**32 * 100.0, 1)


def scripted_answer(reader: str, view: CaseView, unaided_confidence: dict[str, float] | None = None,
                    ai_weight: float = 0.5) -> Answer:
    """What the scripted reader answers for a case in its phase.

    Unaided: the confidence from ``unaided_confidence`` (an answer key) or a hash of reader and case.
    Aided: that confidence moved towards the AI shown by ``ai_weight``; agreement is whether the
    decision matches the AI's call as shown (its tier; without one, its probability at 50). Where
    the AI calls the case outside its scope it shows no answer: the reader keeps their own
    confidence and gives no agreement.
    """
    # Whole numbers, as a reader sets them in the reading window's spin box.
    if unaided_confidence is not None and view.case_code in unaided_confidence:
        own = float(round(unaided_confidence[view.case_code]))
    else:
        own = float(round(_hashed_confidence(reader, view.case_code)))
    confidence = own
    agreement = None
    shown = view.phase == "aided" and bool(view.ai) and view.ai[0].shows_findings
    if shown:
        ai = view.ai[0].probability * 100.0
        confidence = float(round((1.0 - ai_weight) * own + ai_weight * ai))
    decision = int(confidence >= 50.0)
    if shown:
        agreement = "agree" if decision == ai_call(view.ai[0].probability, view.ai[0].tier, 50.0) else "disagree"
    rating = 1 + min(4, int(confidence // 20))
    return Answer(decision, confidence, rating, agreement, f"scripted {view.phase}")


def save_answer(reader: ReaderSession, view: CaseView, answer: Answer, token: str | None = None):  # type: ignore[no-untyped-def]
    scale = reader.study.confidence_scale
    return reader.save_read(
        view.assignment_id, view.phase, answer.decision,
        confidence=answer.confidence if scale in ("0-100", "both") else None,
        rating=answer.rating if scale in ("5-point", "both") else None,
        comment=answer.comment, ai_agreement=answer.ai_agreement,
        client_token=token,
    )


def read_all(reader: ReaderSession, unaided_confidence: dict[str, float] | None = None,
             limit: int | None = None, echo: bool = False) -> int:
    """Read until the assignment is finished, the washout blocks or ``limit`` saves; return the saves."""
    saved = 0
    while limit is None or saved < limit:
        try:
            view = reader.current()
        except WashoutPending:
            break
        if view is None:
            break
        answer = scripted_answer(reader.reader_code, view, unaided_confidence)
        # A deterministic token: a save repeated after a crash finds its first copy.
        token = f"scripted:{reader.reader_code}:{view.assignment_id}:{view.phase}:0"
        read = save_answer(reader, view, answer, token)
        saved += 1
        if echo:
            print(f"saved {read.id} {read.assignment_id} {read.phase}", flush=True)
    return saved


def read_worklist(reader: ReaderSession, unaided_confidence: dict[str, float] | None = None,
                  echo: bool = False) -> int:
    """Like :func:`read_all`, but walks the worklist fetched once instead of asking for the
    current case before every save (fewer queries: the load test). Aided phases still fetch
    the case view, since the answer depends on the AI shown."""
    saved = 0
    for assignment_id, code, session_number, missing in reader.worklist():
        for phase in missing:
            if phase == "aided":
                view = reader.current()
                if view is None or (view.assignment_id, view.phase) != (assignment_id, phase):
                    return saved  # a washout or an out-of-order case: stop here
            else:
                view = CaseView(assignment_id, code, (), phase, session_number, 0, 0, (), None)
            answer = scripted_answer(reader.reader_code, view, unaided_confidence)
            token = f"scripted:{reader.reader_code}:{assignment_id}:{phase}:0"
            try:
                read = save_answer(reader, view, answer, token)
            except WashoutPending:
                return saved
            saved += 1
            if echo:
                print(f"saved {read.id} {read.assignment_id} {read.phase}", flush=True)
    return saved


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--db", required=True)
    parser.add_argument("--study", required=True)
    parser.add_argument("--reader", required=True)
    parser.add_argument("--pin", required=True)
    parser.add_argument("--answers", type=Path, help="JSON {case code: unaided confidence 0-100}")
    parser.add_argument("--limit", type=int)
    parser.add_argument("--worklist", action="store_true",
                        help="walk the worklist fetched once (fewer queries per save)")
    args = parser.parse_args(argv)
    answers = json.loads(args.answers.read_text()) if args.answers else None
    db = open_database(args.db, must_exist=True)
    try:
        reader = sign_in(db, args.study, args.reader, args.pin)
        if args.worklist:
            read_worklist(reader, answers, echo=True)
        else:
            read_all(reader, answers, args.limit, echo=True)
    finally:
        db.close()
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
