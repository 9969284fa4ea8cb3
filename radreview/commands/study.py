"""``radreview study``: design, run and analyse reader studies.

    radreview study create --db study.db --name wrist --cases cases.csv --ai predictions.json \
        --ai-label fracture --mode sequential --scale both --sham-share 0.1
    radreview study create ... --model models/ --ai-label fracture  (runs the models on the cases)
    radreview study add-reader --db study.db --reader R1            (asks for the PIN)
    radreview study status --db study.db
    radreview study verify --db study.db                            (audit chain and reading record)
    radreview study unlock-reader --db study.db --reader R1         (after repeated failed sign-ins)
    radreview study export --db study.db --out exports/             (add --identifiers to include ids)
    radreview study report --db study.db --out report.html [--pdf report.pdf]
    radreview study read --db study.db                              (the reading window)

``--db`` takes a SQLite file path or a ``postgresql://user@host/db`` URL. A SQLite study file is one
trusted operator's; on PostgreSQL every reader gets a database role of their own
(``add-reader``, ``reader-role``; see docs/security_readerstudy.md).
"""

from __future__ import annotations

import argparse
import getpass
import logging
import os
import sys
from pathlib import Path

from radreview import RESEARCH_USE_NOTICE

log = logging.getLogger(__name__)
PIN_ENV = "RADREVIEW_READER_PIN"
DB_PASSWORD_ENV = "RADREVIEW_READER_DB_PASSWORD"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    actions = parser.add_subparsers(dest="study_action", metavar="ACTION", required=True)

    def with_db(sub: argparse.ArgumentParser, study: bool = True) -> argparse.ArgumentParser:
        sub.add_argument("--db", required=True, help="SQLite file or postgresql:// URL")
        if study:
            sub.add_argument("--study", help="study name (needed when the database holds several)")
        return sub

    create = with_db(actions.add_parser("create", help="create a study from a case list"), study=False)
    create.add_argument("--name", required=True, help="study name")
    create.add_argument("--cases", required=True, type=Path,
                        help="CSV: case_id, images (';'-separated), truth[, side, region]")
    create.add_argument("--ai", type=Path,
                        help="AI outputs: radreview predict's results (.json: with every image's tiers, scope and "
                             "heatmap; needs the key written with predict --key, found beside it), or a CSV/JSON "
                             "of case_id|image, model, probability")
    create.add_argument("--ai-key", type=Path, help="the key predict --key wrote, if not the one the results name")
    create.add_argument("--ai-label", help="the label (or task) to show when a model answers several findings")
    create.add_argument("--model", action="append", default=[],
                        help="a model file or folder: run it on the case images here (with heatmaps), "
                             "or the name of a model in --ai to show (repeatable)")
    create.add_argument("--provider", default="auto", help="execution provider when --model runs models here")
    create.add_argument("--question", default="Is there a fracture?")
    create.add_argument("--scale", choices=("0-100", "5-point", "both"), default="0-100",
                        help="confidence scale")
    create.add_argument("--mode", choices=("unaided", "aided", "sequential", "crossover"),
                        default="sequential")
    create.add_argument("--threshold", type=float, default=50.0,
                        help="AI decision threshold on 0-100, where no tier decides: the 'possible' tier and "
                             "probability-only outputs (a 'likely' tier is positive, 'below' negative)")
    create.add_argument("--washout-days", type=int, default=0, help="crossover: days between sessions")
    create.add_argument("--sham-share", type=float, default=0.0,
                        help="share of cases whose AI output is replaced by an altered one")
    create.add_argument("--seed", type=int, help="randomisation seed (recorded; random if omitted)")
    create.add_argument("--pin-min-length", type=int, default=6, help="shortest PIN a reader may have (>= 4)")
    create.add_argument("--lock-after", type=int, default=10,
                        help="failed sign-ins that lock a reader until unlock-reader")
    create.add_argument("--sign-in-delay", type=float, default=1.0,
                        help="seconds to wait after the 3rd failed sign-in, doubling with each further one")

    reader = with_db(actions.add_parser("add-reader", help="add a reader (PIN from the prompt or "
                                        f"${PIN_ENV}; on PostgreSQL also their database role)"))
    reader.add_argument("--reader", required=True, help="reader id (letters, digits, . _ -)")
    reader.add_argument("--db-role", help="PostgreSQL: use this existing login role for the reader "
                        "(default: create rr_<reader>_<digest>, password from the prompt or "
                        f"${DB_PASSWORD_ENV})")

    role = with_db(actions.add_parser("reader-role", help="PostgreSQL: create or re-grant a reader's "
                                      "database role (e.g. for readers added before roles existed)"))
    role.add_argument("--reader", required=True, help="reader id")
    role.add_argument("--db-role", help="an existing login role to use")

    unlock = with_db(actions.add_parser("unlock-reader", help="unlock a reader after failed sign-ins"))
    unlock.add_argument("--reader", required=True, help="reader id")

    with_db(actions.add_parser("status", help="progress per reader, locked readers, record check"))
    with_db(actions.add_parser("verify", help="check the audit chain, every read against its audit "
                               "entry and the database's protections (exit 1 if tampered)"))

    export = with_db(actions.add_parser("export", help="CSV, JSON, iMRMC, MRMC long format, report"))
    export.add_argument("--out", required=True, type=Path, help="output folder")
    export.add_argument("--identifiers", action="store_true",
                        help="include the coordinator's case ids and image paths")

    report = with_db(actions.add_parser("report", help="HTML (and PDF) report"))
    report.add_argument("--out", required=True, type=Path, help="HTML file")
    report.add_argument("--pdf", type=Path, help="also write this PDF")

    read = with_db(actions.add_parser("read", help="open the reading window (reader sign-in)"))
    read.add_argument("--reader", help="pre-fill the reader id")


def run(args: argparse.Namespace) -> int:
    from radreview.readerstudy.db import DatabaseError, open_database
    from radreview.readerstudy.design import StudyDesignError
    from radreview.readerstudy.export import ExportError

    if args.study_action == "read":
        return _read(args)
    if args.study_action == "create":
        try:
            return _create(args)
        except (StudyDesignError, DatabaseError, OSError) as exc:
            print(f"radreview study create: {_message(exc)}; nothing was written", file=sys.stderr)
            return 2
        except KeyboardInterrupt:
            print("radreview study create: interrupted; nothing was written", file=sys.stderr)
            return 130
    try:
        db = open_database(args.db, must_exist=args.study_action != "create")
    except DatabaseError as exc:
        print(f"radreview study: {exc}", file=sys.stderr)
        return 2
    try:
        return {"add-reader": _add_reader, "reader-role": _reader_role,
                "unlock-reader": _unlock_reader, "status": _status, "verify": _verify,
                "export": _export, "report": _report}[args.study_action](db, args)
    except (StudyDesignError, ExportError, OSError) as exc:
        print(f"radreview study {args.study_action}: {_message(exc)}", file=sys.stderr)
        return 2
    finally:
        db.close()


def _create(args) -> int:  # type: ignore[no-untyped-def]
    """Read and check every input (and run the models) first, then write the study in one go:
    a failure at any step leaves no study file behind (readerstudy.db.creating_database)."""
    from radreview.readerstudy.ai_inputs import compute_ai_outputs, model_arguments
    from radreview.readerstudy.db import creating_database
    from radreview.readerstudy.design import (
        StudyDesign,
        check_case_images,
        create_study,
        read_ai_outputs,
        read_case_list,
    )
    from radreview.readerstudy.security import SignInPolicy

    cases = read_case_list(args.cases)
    check_case_images(cases, args.cases)
    model_paths, model_names = model_arguments(args.model)
    ai = read_ai_outputs(args.ai, cases, args.ai_label, args.ai_key) if args.ai else []
    if model_paths:
        ai += _compute_ai(cases, model_paths, args, compute_ai_outputs)
    design = StudyDesign(
        name=args.name, question=args.question, confidence_scale=args.scale, mode=args.mode,
        ai_models=model_names if model_names and not model_paths else [], threshold=args.threshold,
        washout_days=args.washout_days, sham_share=args.sham_share, seed=args.seed,
        sign_in=SignInPolicy(pin_min_length=args.pin_min_length, lock_after=args.lock_after,
                             delay_s=args.sign_in_delay, delay_after=min(3, args.lock_after)),
    )
    with creating_database(args.db) as db:
        create_study(db, design, cases, ai)
    from sqlalchemy.engine import make_url

    from radreview.readerstudy.db import database_url

    where = make_url(database_url(args.db)).render_as_string(hide_password=True)
    shown = sorted({o.model for o in ai if not design.ai_models or o.model in design.ai_models})
    with_results = sum(1 for o in ai if o.result is not None)
    print(f"created study {args.name!r} in {where}: {len(cases)} cases, mode {args.mode}"
          + (f"; AI {', '.join(shown)} ({ai[0].label}), {with_results} case outputs with tiers and heatmaps"
             if ai else "") + f". {RESEARCH_USE_NOTICE}")
    return 0


def _compute_ai(cases, model_paths, args, compute):  # type: ignore[no-untyped-def]
    from tqdm import tqdm

    bar = tqdm(total=0, unit="img", file=sys.stderr, desc="AI")

    def progress(done: int, total: int) -> None:
        bar.total = total
        bar.n = done
        bar.refresh()

    try:
        outputs, problems = compute(cases, model_paths, args.ai_label, args.provider, progress,
                                    workers=min(8, os.cpu_count() or 1))
    finally:
        bar.close()
    for problem in problems:
        print(f"radreview study create: {problem}", file=sys.stderr)
    return outputs


def _add_reader(db, args) -> int:  # type: ignore[no-untyped-def]
    from radreview.readerstudy.design import add_reader, study_id_by_name

    study_id = study_id_by_name(db, args.study)
    pin = os.environ.get(PIN_ENV)
    if pin is None:
        pin = _ask_secret(f"PIN for reader {args.reader}: ", PIN_ENV)
        if _ask_secret("repeat the PIN: ", PIN_ENV) != pin:
            print("radreview study add-reader: the PINs differ", file=sys.stderr)
            return 2
    password = _db_password(db, args) if db.dialect == "postgresql" and not args.db_role else None
    add_reader(db, study_id, args.reader, pin, db_role=args.db_role, db_password=password)
    print(f"added reader {args.reader!r}")
    if db.dialect == "postgresql":
        _print_role(db, study_id, args.reader)
    return 0


def _db_password(db, args) -> str:  # type: ignore[no-untyped-def]
    """The new role's password: from the environment, or asked for (empty: the server
    authenticates the role another way, e.g. certificates or LDAP)."""
    password = os.environ.get(DB_PASSWORD_ENV)
    if password is None:
        password = _ask_secret(f"database password for reader {args.reader}'s role (empty: none): ", DB_PASSWORD_ENV)
        if password and _ask_secret("repeat the database password: ", DB_PASSWORD_ENV) != password:
            raise OSError("the database passwords differ")
    return password


def _message(exc: BaseException) -> str:
    """What went wrong, in words: "PATH: File exists" rather than "[Errno 17] File exists: 'PATH'"."""
    if isinstance(exc, OSError) and exc.strerror and exc.filename:
        return f"{exc.filename}: {exc.strerror}"
    return str(exc)


def _ask_secret(prompt: str, variable: str) -> str:
    """A secret typed at the terminal; without one (input closed, e.g. in a script) a clear error
    that names the environment variable to set instead."""
    try:
        return getpass.getpass(prompt)
    except EOFError:
        raise OSError(f"no terminal to type it in: set {variable} instead") from None


def _print_role(db, study_id: int, reader: str) -> None:  # type: ignore[no-untyped-def]
    from sqlalchemy import select

    from radreview.readerstudy.schema import ReaderRow

    with db.transaction(readonly=True) as session:
        role = session.scalar(select(ReaderRow.db_role).where(ReaderRow.study_id == study_id,
                                                              ReaderRow.code == reader))
    print(f"reader {reader!r} connects as database role {role!r}: "
          f"radreview study read --db postgresql://{role}@HOST/DATABASE")


def _reader_role(db, args) -> int:  # type: ignore[no-untyped-def]
    from radreview.readerstudy.design import reader_role, study_id_by_name

    study_id = study_id_by_name(db, args.study)
    password = _db_password(db, args) if db.dialect == "postgresql" and not args.db_role else None
    reader_role(db, study_id, args.reader, args.db_role, password)
    _print_role(db, study_id, args.reader)
    return 0


def _unlock_reader(db, args) -> int:  # type: ignore[no-untyped-def]
    from radreview.readerstudy.design import study_id_by_name, unlock_reader

    failures = unlock_reader(db, study_id_by_name(db, args.study), args.reader)
    print(f"unlocked reader {args.reader!r} ({failures} failed sign-ins since the last success)")
    return 0


def _verify(db, args) -> int:  # type: ignore[no-untyped-def]
    from radreview.readerstudy.coordinator import Coordinator

    check = Coordinator(db, args.study).verify()
    print(f"reading record: {check.summary()}")
    for problem in check.problems[1:]:
        print(f"  also: {problem}")
    return 0 if check.intact else 1


def _status(db, args) -> int:  # type: ignore[no-untyped-def]
    from radreview.readerstudy.coordinator import Coordinator

    coordinator = Coordinator(db, args.study)
    design = coordinator.design()
    print(f"study {design['name']!r}: {design['mode']}, {design['cases']} cases, "
          f"{len(design['readers'])} readers")
    print(f"{'reader':<16}{'done':>8}{'total':>8}{'%':>7}{'reads':>8}  last read")
    for s in coordinator.status():
        last = s.last_read_at.strftime("%Y-%m-%d %H:%M") if s.last_read_at else "–"
        locked = "  LOCKED (unlock-reader)" if s.locked else ""
        print(f"{s.reader:<16}{s.cases_done:>8}{s.cases_total:>8}{100 * s.fraction:>6.0f}%{s.reads:>8}  {last}{locked}")
    print(f"reading record: {coordinator.verify().summary()}")
    return 0


def _export(db, args) -> int:  # type: ignore[no-untyped-def]
    from radreview.readerstudy.coordinator import Coordinator
    from radreview.readerstudy.export import export_all

    paths = export_all(Coordinator(db, args.study), args.out, identifiers=args.identifiers)
    for name, path in paths.items():
        print(f"{name}: {path}")
    return 0


def _report(db, args) -> int:  # type: ignore[no-untyped-def]
    from radreview.readerstudy.coordinator import Coordinator
    from radreview.readerstudy.report import write_report

    html, pdf = write_report(Coordinator(db, args.study), args.out, args.pdf)
    print(f"report: {html}" + (f", {pdf}" if pdf else ""))
    return 0


def _read(args) -> int:  # type: ignore[no-untyped-def]
    # As the viewer: a missing display or xcb library is named with its fix, not a Qt abort.
    from radreview.system_check import ensure_qt_can_start

    status = ensure_qt_can_start()
    if status:
        return status
    from radreview.gui.reading.app import run_reading_app

    return run_reading_app(args.db, args.study, args.reader)
