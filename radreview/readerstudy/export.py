"""Study exports: tidy CSV, the whole study as JSON, iMRMC input, MRMCaov/RJafroc long format.

Cases appear under their pseudonymous codes. The coordinator's own case ids and the image paths
(which often carry patient names or accession numbers) are written only with
``identifiers=True``.

Spreadsheet formulas, decided per file:
- ``reads.csv`` is for people and spreadsheets: every text cell that begins with ``=``, ``+``,
  ``-``, ``@``, a tab or a carriage return gets a leading ``'`` (:func:`neutralise_cell`; comments
  are free text);
- ``study.imrmc`` and ``mrmc_long.csv`` are for the analysis tools (iMRMC, RJafroc, MRMCaov) and
  are written exactly, without escaping: everything in them is a number, a fixed word, a generated
  case code or a reader code, and reader codes are validated when added (no newline, no comma, no
  leading formula character). A database made before that validation could still hold a bad
  code, so these two writers check every identifier and refuse to write the file, naming it,
  rather than write a forged header or an escaped value the tools would misread;
- ``study.json`` is JSON (no formulas); the HTML report escapes everything it shows.
Every export carries the audit chain's head (``study.json``: ``record``) so that a later
``radreview study verify`` can be compared with it.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

from radreview import RESEARCH_USE_NOTICE, __version__
from radreview.readerstudy.coordinator import Coordinator
from radreview.csv_safety import neutralise as neutralise_cell
from radreview.readerstudy.identifiers import safe_for_analysis_files
from radreview.readerstudy.stats import MODALITIES, compute_statistics

IDENTIFYING_COLUMNS = ("case_source_id",)
TIDY_COLUMNS = (
    "read_id", "reader", "case", "case_source_id", "truth", "side", "region", "modality", "arm",
    "session", "position", "revision", "revises_id", "decision", "confidence", "rating",
    "ai_agreement", "changed", "ai_shown_probability", "ai_in_scope", "ai_tier_shown", "ai_sham",
    "heatmap_available", "heatmap_shown", "heatmap_shown_ms", "heatmap_toggles", "time_to_first_decision_ms",
    "total_time_ms", "telemetry_events", "comment", "created_at",
)


class ExportError(ValueError):
    """An export cannot be written safely; the message names the file and the value."""


def _cell(value: Any) -> Any:
    if value is None:
        return ""
    if isinstance(value, bool):
        return int(value)
    return neutralise_cell(value)


def _check_identifiers(path: Path, what: str, values: Any) -> None:
    bad = sorted({v for v in values if not safe_for_analysis_files(v)})
    if bad:
        raise ExportError(
            f"{path.name}: {what} {bad[0]!r} cannot be written into an analysis file unescaped "
            f"(a newline, comma, control character or leading = + - @); {len(bad)} such value(s); "
            "the file was not written"
        )


def write_tidy_csv(coordinator: Coordinator, path: str | Path, *, identifiers: bool = False,
                   all_revisions: bool = False) -> Path:
    """One row per read (latest revisions unless ``all_revisions``)."""
    path = Path(path)
    columns = [c for c in TIDY_COLUMNS if identifiers or c not in IDENTIFYING_COLUMNS]
    with path.open("w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(columns)
        for read in coordinator.reads(all_revisions=all_revisions):
            writer.writerow([_cell(read[c]) for c in columns])
    return path


def study_document(coordinator: Coordinator, *, identifiers: bool = False) -> dict[str, Any]:
    """The whole study as plain data: design, cases, AI outputs, every read revision, audit, stats."""
    cases = []
    for case in coordinator.cases():
        entry: dict[str, Any] = {"case": case.code, "truth": case.truth, "side": case.side,
                                 "region": case.region, "n_images": len(case.images)}
        if identifiers:
            entry["source_id"] = case.source_id
            entry["images"] = list(case.images)
        cases.append(entry)
    reads = coordinator.reads(all_revisions=True)
    if not identifiers:
        for read in reads:
            for column in IDENTIFYING_COLUMNS:
                read.pop(column, None)
    return {
        "format": "radreview.reader_study/1",
        "radreview_version": __version__,
        "notice": RESEARCH_USE_NOTICE,
        "design": coordinator.design(),
        "progress": [vars(s) | {"last_read_at": s.last_read_at.isoformat() if s.last_read_at else None}
                     for s in coordinator.status()],
        "cases": cases,
        "ai_outputs": [vars(o) for o in coordinator.ai_outputs()],
        "reads": reads,
        "audit_log": coordinator.audit(),
        "record": coordinator.verify().to_dict(),
        "statistics": compute_statistics(coordinator).to_dict(),
    }


def write_json(coordinator: Coordinator, path: str | Path, *, identifiers: bool = False) -> Path:
    path = Path(path)
    path.write_text(json.dumps(study_document(coordinator, identifiers=identifiers), indent=1,
                               default=str), encoding="utf-8")
    return path


def _score_column(coordinator: Coordinator) -> str:
    return "rating" if coordinator.design()["confidence_scale"] == "5-point" else "confidence"


def write_imrmc(coordinator: Coordinator, path: str | Path) -> Path:
    """The iMRMC input file (also read by RJafroc's ``DfReadDataFile(format = "iMRMC")``).

    A free-text header (with the key of the integer ids), ``NR``/``N0``/``N1``/``NM``, then after
    ``BEGIN DATA:`` the truth rows ``-1,case,0,truth`` and one ``reader,case,modality,score`` row per
    read. Ids are integers because some readers of the format require them.
    """
    path = Path(path)
    score = _score_column(coordinator)
    cases = coordinator.cases()
    case_ids = {c.code: i for i, c in enumerate(cases, start=1)}
    readers = coordinator.readers()
    _check_identifiers(path, "reader id", readers)
    _check_identifiers(path, "case code", case_ids)
    reader_ids = {r: i for i, r in enumerate(readers, start=1)}
    reads = [r for r in coordinator.reads() if r[score] is not None]
    modalities = [m for m in MODALITIES if any(r["modality"] == m for r in reads)]
    modality_ids = {m: i for i, m in enumerate(modalities, start=1)}
    design = coordinator.design()
    lines = [
        f"radreview reader study {design['name']!r} ({design['mode']} mode), score = {score}. {RESEARCH_USE_NOTICE}",
        "modalities " + ", ".join(f"{i} = {m}" for m, i in modality_ids.items()),
        "readers " + ", ".join(f"{i} = {r}" for r, i in reader_ids.items()),
        "cases " + ", ".join(f"{i} = {c}" for c, i in case_ids.items()),
        "",
        f"NR: {len(readers)}",
        f"N0: {sum(1 for c in cases if not c.truth)}",
        f"N1: {sum(1 for c in cases if c.truth)}",
        f"NM: {len(modalities)}",
        "",
        "BEGIN DATA:",
    ]
    lines += [f"-1,{case_ids[c.code]},0,{c.truth}" for c in cases]
    lines += [
        f"{reader_ids[r['reader']]},{case_ids[r['case']]},{modality_ids[r['modality']]},{r[score]:g}"
        for r in reads
    ]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def write_mrmc_long(coordinator: Coordinator, path: str | Path) -> Path:
    """The long table R MRMC packages take: ``reader,treatment,case,truth,rating``.

    The columns of MRMCaov's ``VanDyke`` data (``mrmc(empirical_auc(truth, rating), treatment,
    reader, case, data = ...)``); RJafroc users convert it with ``DfReadDataFile`` from iMRMC instead.
    """
    path = Path(path)
    score = _score_column(coordinator)
    reads = coordinator.reads()
    _check_identifiers(path, "reader id", (r["reader"] for r in reads))
    _check_identifiers(path, "case code", (r["case"] for r in reads))
    with path.open("w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(["reader", "treatment", "case", "truth", "rating"])
        for read in reads:
            if read[score] is not None:
                writer.writerow([read["reader"], read["modality"], read["case"], read["truth"], read[score]])
    return path


def export_all(coordinator: Coordinator, folder: str | Path, *, identifiers: bool = False) -> dict[str, Path]:
    """Every export into ``folder``; returns name -> path."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    from radreview.readerstudy.report import write_report

    html, pdf = write_report(coordinator, folder / "report.html", folder / "report.pdf",
                             identifiers=identifiers)
    paths = {
        "reads_csv": write_tidy_csv(coordinator, folder / "reads.csv", identifiers=identifiers),
        "study_json": write_json(coordinator, folder / "study.json", identifiers=identifiers),
    }
    refused = []
    for name, writer, filename in (("imrmc", write_imrmc, "study.imrmc"),
                                   ("mrmc_long", write_mrmc_long, "mrmc_long.csv")):
        try:
            paths[name] = writer(coordinator, folder / filename)
        except ExportError as exc:
            refused.append(str(exc))
    if refused:
        raise ExportError("; ".join(refused) + f" (the other exports are in {folder})")
    return paths | {"report_html": html, "report_pdf": pdf}
