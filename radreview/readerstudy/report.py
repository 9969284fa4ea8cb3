"""The study report: design, progress, statistics tables and ROC curves, as HTML and PDF.

Figures use matplotlib's object API with the Agg and PDF backends only (never pyplot, which could
pick a Qt backend outside the GUI layer). The PDF is written with ``PdfPages``.
"""

from __future__ import annotations

import base64
import html
import io
import math
from pathlib import Path
from typing import Any

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.backends.backend_pdf import PdfPages
from matplotlib.figure import Figure

from radreview import RESEARCH_USE_NOTICE
from radreview.metrics import roc_curve
from radreview.readerstudy.coordinator import Coordinator
from radreview.readerstudy.stats import AI_MODALITY, MODALITIES, StudyStatistics, compute_statistics


def _fmt(value: Any, digits: int = 3) -> str:
    if value is None:
        return "–"
    if isinstance(value, float):
        return "–" if not math.isfinite(value) else f"{value:.{digits}f}"
    return str(value)


def _ci(estimate: float, lower: float, upper: float) -> str:
    return f"{_fmt(estimate)} ({_fmt(lower)}–{_fmt(upper)})"


def roc_figure(stats: StudyStatistics) -> Figure:
    """ROC curves: one panel per modality, each reader a line, the AI dashed on every panel."""
    panels = [m for m in MODALITIES if any(r.modality == m for r in stats.readers)] or [AI_MODALITY]
    figure = Figure(figsize=(5.0 * len(panels), 5.0))
    ai_rows = [r for r in stats.readers if r.is_ai]
    for index, modality in enumerate(panels, start=1):
        axes = figure.add_subplot(1, len(panels), index)
        for row in [r for r in stats.readers if r.modality == modality] + ai_rows:
            curve = roc_curve(*row.roc_scores)
            axes.plot(curve.fpr, curve.tpr, "--" if row.is_ai else "-", drawstyle="default",
                      label=f"{row.reader}{' (AI)' if row.is_ai else ''}: AUC {row.auc.auc:.3f}")
        axes.plot([0, 1], [0, 1], color="0.8", linewidth=0.8)
        axes.set_title(f"{modality} reads" if modality != AI_MODALITY else "AI")
        axes.set_xlabel("1 - specificity")
        axes.set_ylabel("sensitivity")
        axes.set_aspect("equal")
        axes.legend(loc="lower right", fontsize=8)
    figure.tight_layout()
    return figure


def statistics_tables(stats: StudyStatistics) -> list[tuple[str, list[str], list[list[str]]]]:
    """(title, header, rows) for every table of the report."""
    readers = [
        [r.reader + (" (AI)" if r.is_ai else ""), r.modality, str(r.n_cases),
         _ci(r.auc.auc, r.auc.lower, r.auc.upper),
         _ci(r.operating_point.sensitivity.estimate, r.operating_point.sensitivity.lower,
             r.operating_point.sensitivity.upper),
         _ci(r.operating_point.specificity.estimate, r.operating_point.specificity.lower,
             r.operating_point.specificity.upper),
         _fmt(r.kappa_truth.kappa), _fmt(r.kappa_ai.kappa) if r.kappa_ai else "–",
         _fmt(r.agreement_with_ai.estimate) if r.agreement_with_ai else "–"]
        for r in stats.readers
    ]
    tables = [("Readers and AI", ["reader", "modality", "cases", "AUC (95% CI, DeLong)",
                                  "sensitivity (Wilson)", "specificity (Wilson)", "κ vs truth",
                                  "κ vs AI shown", "agreement with AI"], readers)]
    if stats.fleiss:
        tables.append(("Agreement across readers", ["modality", "Fleiss' κ", "p (κ = 0)"],
                       [[m, _fmt(k.kappa), _fmt(k.p_value)] for m, k in stats.fleiss.items()]))
    if stats.changes:
        tables.append(("Decisions changed with the AI", ["reader", "cases", "changed", "towards truth",
                                                         "away from truth", "accuracy before", "accuracy after"],
                       [[reader, str(c.n), str(c.changed.successes), str(c.towards_truth),
                         str(c.away_from_truth), _fmt(c.accuracy_before.estimate),
                         _fmt(c.accuracy_after.estimate)] for reader, c in stats.changes.items()]))
    if stats.sham_followed:
        tables.append(("Sham-AI cases", ["reader", "sham cases read", "changed towards sham AI",
                                         "aided call equals sham AI"],
                       [[reader, *(str(v) for v in counts.values())]
                        for reader, counts in stats.sham_followed.items()]))
    if stats.mrmc is not None:
        test = stats.mrmc.random_readers_random_cases
        rows = [[str(c.modality_a) + " − " + str(c.modality_b), _fmt(c.difference),
                 f"({_fmt(c.lower)}, {_fmt(c.upper)})", _fmt(test.statistic), f"{test.ndf:g}",
                 _fmt(test.ddf, 2), _fmt(test.p_value, 4)] for c in test.comparisons]
        rows += [[f"{m.modality} (reader-averaged)", _fmt(m.auc), f"({_fmt(m.lower)}, {_fmt(m.upper)})",
                  "", "", _fmt(m.df, 2), ""] for m in test.modalities]
        tables.append(("Reader-averaged AUC, aided vs unaided (Obuchowski-Rockette, DeLong covariance, "
                       "Hillis df, random readers and cases)",
                       ["comparison", "AUC / difference", "95% CI", "F", "ndf", "ddf", "p"], rows))
    return tables


def design_lines(design: dict[str, Any], status: list[Any], record: str | None = None) -> list[str]:
    lines = [
        f"Question: {design['question']}",
        f"Mode: {design['mode']}; confidence scale: {design['confidence_scale']}; "
        f"AI threshold: {design['threshold']:g}/100",
        f"Cases: {design['cases']} ({design['positive_cases']} positive); readers: {len(design['readers'])}",
        f"AI models shown: {', '.join(design['ai_models']) or 'none'}",
        f"Sham AI: {design['sham_share']:.0%} of cases ({design['sham_cases']} cases, probability mirrored)",
        f"Washout: {design['washout_days']} days; study seed {design['seed']}",
    ]
    lines += [f"Reader {s.reader}: {s.cases_done}/{s.cases_total} cases, {s.reads} reads saved"
              + (" (locked after failed sign-ins)" if getattr(s, "locked", False) else "") for s in status]
    if record is not None:
        # The audit chain's head: compare it with a later 'radreview study verify'.
        lines.append(f"Reading record: {record}")
    return lines


def _png(figure: Figure) -> str:
    buffer = io.BytesIO()
    FigureCanvasAgg(figure).print_png(buffer)
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def render_html(coordinator: Coordinator, stats: StudyStatistics) -> str:
    design = coordinator.design()
    parts = [
        "<!DOCTYPE html><html><head><meta charset='utf-8'>",
        f"<title>Reader study {html.escape(design['name'])}</title>",
        "<style>body{font-family:sans-serif;margin:2em;max-width:75em}table{border-collapse:collapse;"
        "margin:1em 0}td,th{border:1px solid #bbb;padding:3px 8px;text-align:right}"
        "td:first-child,th:first-child{text-align:left}.notice{color:#a00}</style></head><body>",
        f"<h1>Reader study “{html.escape(design['name'])}”</h1>",
        f"<p class='notice'>{html.escape(RESEARCH_USE_NOTICE)}</p>",
        "<h2>Design and progress</h2><ul>",
        *(f"<li>{html.escape(line)}</li>"
          for line in design_lines(design, coordinator.status(), coordinator.verify().summary())),
        "</ul><h2>ROC curves</h2>",
        f"<img alt='ROC curves' src='data:image/png;base64,{_png(roc_figure(stats))}'>",
    ]
    for title, header, rows in statistics_tables(stats):
        parts.append(f"<h2>{html.escape(title)}</h2><table><tr>")
        parts += [f"<th>{html.escape(h)}</th>" for h in header]
        parts.append("</tr>")
        for row in rows:
            parts.append("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in row) + "</tr>")
        parts.append("</table>")
    if stats.notes:
        parts.append("<h2>Notes</h2><ul>" + "".join(f"<li>{html.escape(n)}</li>" for n in stats.notes) + "</ul>")
    parts.append("</body></html>")
    return "\n".join(parts)


def table_figure(title: str, header: list[str], rows: list[list[str]]) -> Figure:
    """One statistics table on an A4 landscape page."""
    page = Figure(figsize=(11.69, 8.27))
    axes = page.add_subplot(1, 1, 1)
    axes.axis("off")
    axes.set_title(title, fontsize=11, loc="left", wrap=True)
    if rows:
        table = axes.table(cellText=rows, colLabels=header, loc="upper center", cellLoc="center")
        table.auto_set_font_size(False)
        table.set_fontsize(8)
        table.auto_set_column_width(list(range(len(header))))
        table.scale(1.0, 1.4)
    return page


def write_pdf(coordinator: Coordinator, stats: StudyStatistics, path: Path) -> None:
    design = coordinator.design()
    with PdfPages(path) as pdf:
        page = Figure(figsize=(8.27, 11.69))  # A4 portrait
        page.text(0.06, 0.96, f"Reader study “{design['name']}”", fontsize=16, weight="bold", va="top")
        page.text(0.06, 0.93, RESEARCH_USE_NOTICE, fontsize=9, color="darkred", va="top")
        lines = design_lines(design, coordinator.status(), coordinator.verify().summary())
        for i, line in enumerate(lines + stats.notes):
            page.text(0.06, 0.89 - 0.022 * i, line, fontsize=9, va="top", wrap=True)
        pdf.savefig(page)
        pdf.savefig(roc_figure(stats))
        for title, header, rows in statistics_tables(stats):
            pdf.savefig(table_figure(title, header, rows))
        metadata = pdf.infodict()
        metadata["Title"] = f"Reader study {design['name']}"
        metadata["Subject"] = RESEARCH_USE_NOTICE


def write_report(coordinator: Coordinator, html_path: str | Path, pdf_path: str | Path | None = None,
                 *, identifiers: bool = False) -> tuple[Path, Path | None]:
    """Write the HTML report (and the PDF when ``pdf_path`` is given).

    The report holds no case identifiers at all (``identifiers`` is accepted for symmetry with
    the other exports): only pseudonymous codes appear, and only in aggregate.
    """
    del identifiers
    stats = compute_statistics(coordinator)
    html_path = Path(html_path)
    html_path.write_text(render_html(coordinator, stats), encoding="utf-8")
    pdf_out = None
    if pdf_path is not None:
        pdf_out = Path(pdf_path)
        write_pdf(coordinator, stats, pdf_out)
    return html_path, pdf_out
