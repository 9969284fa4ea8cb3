"""Study design: the case list, the question, the reading mode, AI outputs, readers and their
randomised reading order.

Modes:
- ``unaided``: one session, no AI;
- ``aided``: one session, the AI shown from the start;
- ``sequential``: one session; per case an unaided read is locked, then the AI is revealed and an
  aided read is recorded with an explicit agree/disagree and whether the decision changed;
- ``crossover``: two sessions, each case read unaided in one and aided in the other; which arm
  comes first is randomised per reader, and the second session opens only after ``washout_days``.

A sham-AI option replaces the AI output shown on a chosen share of cases by a deliberately altered
one (the probability mirrored, ``1 - p``, with its tier and heatmap altered to match:
:func:`radreview.readerstudy.ai_inputs.sham_payload`), recording both the real and the shown output.
AI outputs come from :mod:`radreview.readerstudy.ai_inputs` (predict's results or the models).
Every random choice uses a recorded seed: the study seed for the case codes and sham cases, and a
per-reader seed (derived from the study seed and the reader's rank) for the reader's order.

Nothing from an input file is trusted: reader codes and case ids must come from a safe character
set (:mod:`radreview.readerstudy.identifiers`), free text may not hold control characters, and
PINs must be long enough and not easy to guess. The study records its sign-in policy (minimum PIN
length, delays and lock after failed sign-ins) in ``settings["security"]``.
"""

from __future__ import annotations

import csv
import random
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError

from radreview.readerstudy.audit import append_audit
from radreview.readerstudy.db import Database
from radreview.readerstudy.identifiers import (
    IdentifierError,
    check_case_id,
    check_reader_code,
    check_text,
)
from radreview.readerstudy.schema import (
    AIOutputRow,
    ArmRow,
    AssignmentRow,
    CaseImageRow,
    CaseRow,
    ReaderRow,
    SessionRow,
    StudyRow,
)
from radreview.readerstudy.security import SignInPolicy, check_pin, hash_pin

MODES = ("unaided", "aided", "sequential", "crossover")
SCALES = ("0-100", "5-point", "both")
COORDINATOR = "coordinator"

_TRUE = {"1", "true", "yes", "y", "positive", "pos", "abnormal", "fracture", "fractured"}
_FALSE = {"0", "false", "no", "n", "negative", "neg", "normal"}


class StudyDesignError(ValueError):
    """The study design or one of its input files is wrong; the message says where and why."""


@dataclass(frozen=True)
class CaseSpec:
    """One line of the case list."""

    source_id: str
    images: tuple[str, ...]
    truth: int
    side: str | None = None
    region: str | None = None


@dataclass(frozen=True)
class AIOutputSpec:
    """A model's answer for a case: the case-level probability of the study's label and, when the
    source has them, each image's whole result (:mod:`radreview.readerstudy.ai_inputs`)."""

    source_id: str
    model: str
    probability: float
    label: str = ""
    heatmap_path: str | None = None
    in_scope: bool | None = None  # the model's scope verdict for the case (None: no scope check)
    tier: str = ""  # the tier of the label at the case's probability ("out_of_scope", "" without one)
    result: dict[str, Any] | None = None  # ai_inputs.STUDY_AI_FORMAT payload: per-image results


@dataclass
class StudyDesign:
    """Everything ``study create`` decides."""

    name: str
    question: str = "Is there a fracture?"
    confidence_scale: str = "0-100"
    mode: str = "sequential"
    ai_models: list[str] = field(default_factory=list)
    threshold: float = 50.0
    washout_days: int = 0
    sham_share: float = 0.0
    seed: int | None = None
    settings: dict[str, Any] = field(default_factory=dict)
    # Minimum PIN length, delays and lock after failed sign-ins (kept in settings["security"]).
    sign_in: SignInPolicy = field(default_factory=SignInPolicy)

    def validate(self) -> None:
        if not self.name.strip():
            raise StudyDesignError("the study needs a name")
        try:
            check_text(self.name, "the study name", 200)
            check_text(self.question, "the question", 2000)
            for model in self.ai_models:
                check_text(model, "the model name", 200)
            self.sign_in.validate()
        except (IdentifierError, ValueError) as exc:
            raise StudyDesignError(str(exc)) from None
        if self.mode not in MODES:
            raise StudyDesignError(f"reading mode {self.mode!r} is not one of {', '.join(MODES)}")
        if self.confidence_scale not in SCALES:
            raise StudyDesignError(
                f"confidence scale {self.confidence_scale!r} is not one of {', '.join(SCALES)}"
            )
        if not 0.0 <= self.sham_share <= 1.0:
            raise StudyDesignError(f"the sham-AI share {self.sham_share} must be between 0 and 1")
        if self.sham_share > 0 and self.mode == "unaided":
            raise StudyDesignError("a sham-AI arm needs a mode that shows the AI")
        if self.washout_days < 0:
            raise StudyDesignError("the washout cannot be negative")
        if self.washout_days and self.mode != "crossover":
            raise StudyDesignError("a washout applies only to the crossover mode")
        if not 0.0 <= self.threshold <= 100.0:
            raise StudyDesignError("the threshold is on the 0-100 scale")

    @property
    def shows_ai(self) -> bool:
        return self.mode != "unaided"


def _now() -> datetime:
    return datetime.now(UTC)


def parse_truth(value: str, where: str) -> int:
    text = value.strip().lower()
    if text in _TRUE:
        return 1
    if text in _FALSE:
        return 0
    raise StudyDesignError(f"{where}: truth {value!r} is not 0/1, yes/no, positive/negative")


def check_case_images(cases: list[CaseSpec], where: str | Path) -> None:
    """Refuse a case list whose images are not there now: readers would meet a missing image in
    the middle of the study (the first few are named, with their case)."""
    missing = [(case.source_id, image) for case in cases for image in case.images if not Path(image).is_file()]
    if missing:
        named = "; ".join(f"case {case!r}: {image}" for case, image in missing[:5])
        more = f" and {len(missing) - 5} more" if len(missing) > 5 else ""
        raise StudyDesignError(f"{where}: {len(missing)} image file(s) not found: {named}{more}")


def read_case_list(path: str | Path) -> list[CaseSpec]:
    """Read the case CSV: ``case_id``, images, ``truth`` and optional ``side``, ``region``.

    Images come from an ``images`` column (several paths separated by ``;``) or from columns
    ``image``, ``image_path``, ``image1``, ``image2``... Relative paths are taken relative to the
    CSV file's folder.
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8-sig")
    except OSError as exc:
        raise StudyDesignError(f"{path}: cannot read the case list ({exc.strerror or exc})") from exc
    rows = list(csv.DictReader(text.splitlines()))
    if not rows:
        raise StudyDesignError(f"{path}: the case list has no cases")
    columns = {c.strip().lower(): c for c in rows[0].keys() if c}
    for needed in ("case_id", "truth"):
        if needed not in columns:
            raise StudyDesignError(f"{path}: the case list needs a '{needed}' column")
    image_columns = [columns[c] for c in columns if c in ("images", "image", "image_path", "path")
                     or (c.startswith("image") and c[5:].isdigit())]
    if not image_columns:
        raise StudyDesignError(f"{path}: the case list needs an 'images' (or 'image') column")
    cases: list[CaseSpec] = []
    seen: set[str] = set()
    for line, row in enumerate(rows, start=2):
        where = f"{path}, line {line}"
        case_id = (row.get(columns["case_id"]) or "").strip()
        if not case_id:
            raise StudyDesignError(f"{where}: empty case_id")
        try:
            check_case_id(case_id)
        except IdentifierError as exc:
            raise StudyDesignError(f"{where}: {exc}") from None
        if case_id in seen:
            raise StudyDesignError(f"{where}: case_id {case_id!r} appears twice")
        seen.add(case_id)
        images: list[str] = []
        for column in image_columns:
            for item in (row.get(column) or "").split(";"):
                if item.strip():
                    image = Path(item.strip()).expanduser()
                    images.append(str(image if image.is_absolute() else (path.parent / image).resolve()))
        if not images:
            raise StudyDesignError(f"{where}: case {case_id!r} has no image")
        side = (row.get(columns["side"]) or "").strip() or None if "side" in columns else None
        region = (row.get(columns["region"]) or "").strip() or None if "region" in columns else None
        truth = parse_truth(row.get(columns["truth"]) or "", where)
        cases.append(CaseSpec(case_id, tuple(images), truth, side, region))
    return cases


def read_ai_outputs(path: str | Path, cases: list[CaseSpec], label: str | None = None,
                    key: str | Path | None = None) -> list[AIOutputSpec]:
    """AI outputs per case from ``radreview predict``'s results or a CSV/JSON of rows
    (:func:`radreview.readerstudy.ai_inputs.read_ai_outputs`)."""
    from radreview.readerstudy.ai_inputs import read_ai_outputs as read

    return read(path, cases, label, key)


def _audit(session, study_id: int | None, actor: str, action: str, **detail: Any) -> None:  # type: ignore[no-untyped-def]
    append_audit(session, study_id, actor, action, detail, _now())


def _check_case_specs(cases: list[CaseSpec], outputs: list[AIOutputSpec]) -> None:
    """Identifiers and texts of cases and AI outputs (also when they did not come from a file)."""
    try:
        for case in cases:
            check_case_id(case.source_id)
            if case.side is not None:
                check_text(case.side, f"case {case.source_id}: the side", 20)
            if case.region is not None:
                check_text(case.region, f"case {case.source_id}: the region", 80)
        for output in outputs:
            check_text(output.model, "the model name", 200)
            check_text(output.label, "the label", 80)
    except IdentifierError as exc:
        raise StudyDesignError(str(exc)) from None


def arms_for_mode(mode: str) -> list[tuple[str, bool]]:
    return {
        "unaided": [("unaided", False)],
        "aided": [("aided", True)],
        "sequential": [("sequential", True)],
        "crossover": [("unaided", False), ("aided", True)],
    }[mode]


def create_study(
    db: Database,
    design: StudyDesign,
    cases: list[CaseSpec],
    ai_outputs: list[AIOutputSpec] = (),  # type: ignore[assignment]
) -> int:
    """Create the study with its cases, arms and AI outputs in one transaction; return its id."""
    design.validate()
    if not cases:
        raise StudyDesignError("the study has no cases")
    _check_case_specs(cases, list(ai_outputs))
    seed = design.seed if design.seed is not None else random.SystemRandom().randrange(2**31)
    rng = random.Random(seed)
    models = list(design.ai_models) or sorted({o.model for o in ai_outputs})
    outputs = [o for o in ai_outputs if o.model in models]
    if design.shows_ai:
        if not models:
            raise StudyDesignError(f"mode {design.mode!r} shows the AI: give AI outputs or models")
        have = {(o.source_id, o.model) for o in outputs}
        missing = [f"{c.source_id}/{m}" for c in cases for m in models if (c.source_id, m) not in have]
        if missing:
            raise StudyDesignError(
                f"no AI output for {len(missing)} case/model pair(s), e.g. {', '.join(missing[:5])} "
                "(are the case list's images the files the AI ran on?)"
            )
    # Pseudonymous codes in a random order, so that a code says nothing about the source list.
    order = list(range(len(cases)))
    rng.shuffle(order)
    width = max(3, len(str(len(cases))))
    codes = {cases[i].source_id: f"C{rank + 1:0{width}d}" for rank, i in enumerate(order)}
    sham_cases: set[str] = set()
    if design.sham_share > 0:
        count = round(design.sham_share * len(cases))
        sham_cases = set(rng.sample([c.source_id for c in cases], count))
    with db.transaction() as session:
        if session.scalar(select(StudyRow.id).where(StudyRow.name == design.name)) is not None:
            raise StudyDesignError(f"a study named {design.name!r} already exists in {db}")
        study = StudyRow(
            name=design.name, question=design.question, confidence_scale=design.confidence_scale,
            mode=design.mode, threshold=design.threshold, washout_days=design.washout_days,
            sham_share=design.sham_share, seed=seed, ai_models=models,
            settings={**design.settings, "security": design.sign_in.to_settings()}, created_at=_now(),
        )
        session.add(study)
        session.flush()
        for name, shows_ai in arms_for_mode(design.mode):
            session.add(ArmRow(study_id=study.id, name=name, shows_ai=shows_ai))
        case_ids: dict[str, int] = {}
        for position, spec in enumerate(cases):
            row = CaseRow(
                study_id=study.id, code=codes[spec.source_id], source_id=spec.source_id,
                truth=spec.truth, side=spec.side, region=spec.region, position=position,
            )
            session.add(row)
            session.flush()
            case_ids[spec.source_id] = row.id
            for image_position, image in enumerate(spec.images):
                session.add(CaseImageRow(case_id=row.id, position=image_position, path=image))
        for output in outputs:
            sham = output.source_id in sham_cases
            shown_probability = 1.0 - output.probability if sham else output.probability
            payload, shown_tier = output.result, output.tier
            shown_result = {"images": payload.get("images", [])} if payload is not None else None
            if sham and payload is not None:
                from radreview.readerstudy.ai_inputs import sham_payload

                shown, shown_probability, shown_tier = sham_payload(payload)
                shown_result = {"images": shown["images"]}
            elif sham:
                shown_tier = ""  # a probability-only output has no cut-offs to re-tier it with
            session.add(AIOutputRow(
                case_id=case_ids[output.source_id], model=output.model, label=output.label,
                probability=output.probability, shown_probability=shown_probability,
                sham=sham, heatmap_path=output.heatmap_path, in_scope=output.in_scope,
                tier=output.tier or None, shown_tier=shown_tier or None, result=payload,
                shown_result=shown_result,
            ))
        _audit(session, study.id, COORDINATOR, "study created", mode=design.mode, cases=len(cases),
               seed=seed, models=models, sham_cases=len(sham_cases))
        return study.id


def study_id_by_name(db: Database, name: str | None) -> int:
    """The id of the study with this name, or of the only study when no name is given."""
    with db.transaction() as session:
        if name:
            study_id = session.scalar(select(StudyRow.id).where(StudyRow.name == name))
            if study_id is None:
                raise StudyDesignError(f"{db}: no study named {name!r}")
            return study_id
        ids = session.scalars(select(StudyRow.id)).all()
    if len(ids) != 1:
        raise StudyDesignError(
            f"{db}: {'no study' if not ids else 'several studies'} found; name one with --study"
        )
    return ids[0]


def add_reader(db: Database, study_id: int, code: str, pin: str, *, db_role: str | None = None,
               db_password: str | None = None) -> int:
    """Add a reader with a PIN; create their session(s) and randomised reading order.

    On PostgreSQL the reader also gets a database login role of their own (``db_role``, or a name
    derived from the study; created with ``db_password`` if it does not exist yet), confined by
    privileges and row-level security: see :mod:`radreview.readerstudy.roles`.
    """
    from radreview.readerstudy.roles import RoleError, provision_reader_role

    code = code.strip(" ")  # (a newline or other control character is refused, not removed)
    if not code:
        raise StudyDesignError("the reader needs an id")
    try:
        check_reader_code(code)
    except IdentifierError as exc:
        raise StudyDesignError(str(exc)) from None
    if db_role is not None and db.dialect != "postgresql":
        raise StudyDesignError("--db-role applies to PostgreSQL studies only")
    with db.transaction(readonly=True) as session:
        settings = session.scalar(select(StudyRow.settings).where(StudyRow.id == study_id))
    policy = SignInPolicy.from_settings(settings)
    try:
        check_pin(pin, policy.pin_min_length, code)
        pin_hash = hash_pin(pin)
    except ValueError as exc:
        raise StudyDesignError(str(exc)) from exc
    try:
        with db.transaction() as session:
            study = session.get(StudyRow, study_id)
            if study is None:
                raise StudyDesignError(f"{db}: no study with id {study_id}")
            if session.scalar(select(ReaderRow.id).where(ReaderRow.study_id == study_id,
                                                         ReaderRow.code == code)) is not None:
                raise StudyDesignError(f"reader {code!r} already exists in this study")
            role = None
            if db.dialect == "postgresql":
                role = provision_reader_role(session, study_id, code, db_role, db_password)
            rank = session.scalar(select(func.count(ReaderRow.id)).where(ReaderRow.study_id == study_id))
            # Derived, recorded seed: reproducible from the study seed and the reader's rank.
            reader_seed = random.Random(f"{study.seed}:{rank}").randrange(2**31)
            reader = ReaderRow(study_id=study_id, code=code, pin_hash=pin_hash, seed=reader_seed,
                               created_at=_now(), db_role=role)
            session.add(reader)
            session.flush()
            rng = random.Random(reader_seed)
            arms = session.scalars(select(ArmRow).where(ArmRow.study_id == study_id).order_by(ArmRow.id)).all()
            arms = list(arms)
            if len(arms) > 1:
                rng.shuffle(arms)  # crossover: which arm comes first
            case_ids = list(session.scalars(
                select(CaseRow.id).where(CaseRow.study_id == study_id).order_by(CaseRow.position)
            ))
            for number, arm in enumerate(arms, start=1):
                row = SessionRow(reader_id=reader.id, arm_id=arm.id, number=number)
                session.add(row)
                session.flush()
                order = list(case_ids)
                rng.shuffle(order)
                session.add_all(
                    AssignmentRow(session_id=row.id, case_id=case_id, position=position)
                    for position, case_id in enumerate(order)
                )
            detail: dict[str, Any] = {"reader": code, "seed": reader_seed, "arm_order": [a.name for a in arms]}
            if role is not None:
                detail["db_role"] = role
            _audit(session, study_id, COORDINATOR, "reader added", **detail)
            return reader.id
    except RoleError as exc:
        raise StudyDesignError(str(exc)) from None
    except IntegrityError as exc:
        if "db_role" in str(exc.orig):
            raise StudyDesignError(f"database role {db_role!r} already belongs to another reader") from None
        raise StudyDesignError(f"reader {code!r} already exists in this study") from exc


def reader_role(db: Database, study_id: int, code: str, db_role: str | None = None,
                db_password: str | None = None) -> str:
    """PostgreSQL: give an existing reader (e.g. one added before roles existed) their own
    database role, or grant an existing one its privileges again; return the role's name."""
    from radreview.readerstudy.roles import RoleError, provision_reader_role

    if db.dialect != "postgresql":
        raise StudyDesignError("reader roles exist on PostgreSQL only; a SQLite study file has one trusted operator")
    try:
        with db.transaction() as session:
            reader = session.scalar(select(ReaderRow).where(ReaderRow.study_id == study_id, ReaderRow.code == code))
            if reader is None:
                raise StudyDesignError(f"no reader {code!r} in this study")
            role = provision_reader_role(session, study_id, code, db_role or reader.db_role, db_password)
            if reader.db_role != role:
                reader.db_role = role
            _audit(session, study_id, COORDINATOR, "reader role", reader=code, db_role=role)
            return role
    except RoleError as exc:
        raise StudyDesignError(str(exc)) from None
    except IntegrityError:
        raise StudyDesignError(f"database role {db_role!r} already belongs to another reader") from None


def unlock_reader(db: Database, study_id: int, code: str) -> int:
    """Unlock a reader locked by failed sign-ins (the count starts again); return the failures
    that had been counted."""
    from radreview.readerstudy.reading import UNLOCKED, failed_sign_ins

    with db.transaction() as session:
        if session.scalar(select(ReaderRow.id).where(ReaderRow.study_id == study_id, ReaderRow.code == code)) is None:
            raise StudyDesignError(f"no reader {code!r} in this study")
        failures, _ = failed_sign_ins(session, study_id, code)
        _audit(session, study_id, COORDINATOR, UNLOCKED, reader=code, failures=failures)
        return failures
