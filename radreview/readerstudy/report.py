"""The study report: design, progress, statistics tables and ROC curves, as HTML and PDF.

Figures use matplotlib's object API with the Agg and PDF backends only (never pyplot, which could
pick a Qt backend outside the GUI layer). The PDF is written with ``PdfPages``: every page A4
landscape, the design, warnings and ROC curves on the first, then the tables (several to a page,
9 pt text, long ones continued) and the notes.

Figures that rest on too few cases are flagged (⚠ and a warning at the top), and their intervals
are the ones that hold on few cases (:mod:`radreview.metrics.small_sample`).
"""

from __future__ import annotations

import base64
import html
import io
import math
import textwrap
from pathlib import Path
from typing import Any

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.backends.backend_pdf import PdfPages
from matplotlib.figure import Figure

from radreview import RESEARCH_USE_NOTICE
from radreview.metrics import roc_curve
from radreview.metrics.small_sample import MIN_CASES_PER_CLASS
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
        if axes.get_legend_handles_labels()[0]:  # a panel with no reads yet has no curve to name
            axes.legend(loc="lower right", fontsize=8)
    figure.tight_layout()
    return figure


CONSERVATIVE_MARK = "†"
EXACT_MARK = "*"
FEW_CASES_MARK = "⚠"
TABLE_LEGEND = (f"{CONSERVATIVE_MARK} conservative interval (Birnbaum-Klose variance bound) where DeLong's is "
                f"unreliable; {EXACT_MARK} exact Clopper-Pearson interval where the normal approximation fails "
                f"(fewer than 5 successes or failures), Wilson elsewhere; {FEW_CASES_MARK} fewer than "
                f"{MIN_CASES_PER_CLASS} positive or negative cases: the figure is unreliable")


def _proportion_cell(p: Any, method: str) -> str:
    return _ci(p.estimate, p.lower, p.upper) + (EXACT_MARK if method == "clopper-pearson" else "")


def statistics_tables(stats: StudyStatistics) -> list[tuple[str, list[str], list[list[str]]]]:
    """(title, header, rows) for every table of the report."""
    readers = [
        [r.reader + (" (AI)" if r.is_ai else "") + (f" {FEW_CASES_MARK}" if r.warning else ""), r.modality,
         f"{r.n_cases} ({r.n_positive}+ / {r.n_negative}−)",
         _ci(r.auc.auc, r.auc_lower, r.auc_upper) + (CONSERVATIVE_MARK if r.auc_ci_method != "delong" else ""),
         _proportion_cell(r.operating_point.sensitivity, r.ci_methods.get("sensitivity", "wilson")),
         _proportion_cell(r.operating_point.specificity, r.ci_methods.get("specificity", "wilson")),
         _fmt(r.kappa_truth.kappa), _fmt(r.kappa_ai.kappa) if r.kappa_ai else "–",
         _fmt(r.agreement_with_ai.estimate) if r.agreement_with_ai else "–"]
        for r in stats.readers
    ]
    tables = [("Readers and AI, on the same cases", ["reader", "modality", "cases (pos / neg)", "AUC (95% CI)",
                                                    "sensitivity (95% CI)", "specificity (95% CI)", "κ vs truth",
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
        f"Mode: {design['mode']}; confidence scale: {design['confidence_scale']}",
        f"AI call: its tier as shown (likely / below); threshold {design['threshold']:g}/100 "
        "for 'possible' and probability-only outputs",
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
        "td:first-child,th:first-child{text-align:left}.notice{color:#a00}.warning{color:#a00;font-weight:bold}"
        ".legend{font-size:90%;color:#444}</style></head><body>",
        f"<h1>Reader study “{html.escape(design['name'])}”</h1>",
        f"<p class='notice'>{html.escape(RESEARCH_USE_NOTICE)}</p>",
        "<h2>Design and progress</h2><ul>",
        *(f"<li>{html.escape(line)}</li>"
          for line in design_lines(design, coordinator.status(), coordinator.verify().summary())),
        "</ul>",
    ]
    if stats.warnings:
        parts.append("<h2>Warnings</h2><ul>" + "".join(f"<li class='warning'>{html.escape(w)}</li>"
                                                       for w in stats.warnings) + "</ul>")
    parts += ["<h2>ROC curves</h2>",
              f"<img alt='ROC curves' src='data:image/png;base64,{_png(roc_figure(stats))}'>"]
    for index, (title, header, rows) in enumerate(statistics_tables(stats)):
        parts.append(f"<h2>{html.escape(title)}</h2><table><tr>")
        parts += [f"<th>{html.escape(h)}</th>" for h in header]
        parts.append("</tr>")
        for row in rows:
            parts.append("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in row) + "</tr>")
        parts.append("</table>")
        if index == 0:
            parts.append(f"<p class='legend'>{html.escape(TABLE_LEGEND)}</p>")
    if stats.notes:
        parts.append("<h2>Notes</h2><ul>" + "".join(f"<li>{html.escape(n)}</li>" for n in stats.notes) + "</ul>")
    parts.append("</body></html>")
    return "\n".join(parts)


# The PDF: every page A4 landscape; text at 9 pt or more.
PAGE = (11.69, 8.27)  # inches
MARGIN = 0.5
TEXT_PT = 9.0
LINE_IN = 0.19  # a 9 pt line with its leading
CHAR_IN = 0.068  # the average width of a 9 pt DejaVu Sans character (measured), with slack
ROW_IN = 0.27


def _wrap(lines: list[str], width_in: float, size: float = TEXT_PT) -> list[str]:
    chars = max(20, int(width_in / (CHAR_IN * size / TEXT_PT)))
    out: list[str] = []
    for line in lines:
        out += textwrap.wrap(line, chars, subsequent_indent="    ") or [""]
    return out


def _text_block(page: Figure, top_in: float, lines: list[str], color: str = "black", size: float = TEXT_PT,
                weight: str = "normal") -> float:
    """Write ``lines`` from ``top_in`` (inches from the top); return the height used in inches."""
    height = PAGE[1]
    for i, line in enumerate(lines):
        page.text(MARGIN / PAGE[0], 1.0 - (top_in + i * LINE_IN * size / TEXT_PT) / height, line, fontsize=size,
                  color=color, weight=weight, va="top")
    return len(lines) * LINE_IN * size / TEXT_PT


def first_page(coordinator: Coordinator, stats: StudyStatistics) -> tuple[Figure, list[str]]:
    """Title, design, progress and warnings, and the ROC curves below them; returns the page and the
    lines that did not fit (they follow the tables)."""
    design = coordinator.design()
    page = Figure(figsize=PAGE)
    width = PAGE[0] - 2 * MARGIN
    top = MARGIN
    top += _text_block(page, top, [f"Reader study “{design['name']}”"], size=16, weight="bold") + 0.05
    top += _text_block(page, top, [RESEARCH_USE_NOTICE], color="darkred")
    text = _wrap(design_lines(design, coordinator.status(), coordinator.verify().summary()), width)
    warnings = _wrap([f"Warning: {w}" for w in stats.warnings], width)
    room = int((PAGE[1] - top - MARGIN - 3.0) / LINE_IN)  # leave 3 in for the ROC curves
    fits, rest = (text + warnings)[:room], (text + warnings)[room:]
    n_text = min(len(text), len(fits))
    top += _text_block(page, top + 0.1, fits[:n_text]) + 0.1
    if fits[n_text:]:
        top += _text_block(page, top, fits[n_text:], color="darkred")
    _roc_axes(page, stats, top + 0.35, PAGE[1] - MARGIN - 0.45)
    return page, rest


def _roc_axes(page: Figure, stats: StudyStatistics, top_in: float, bottom_in: float) -> None:
    panels = [m for m in MODALITIES if any(r.modality == m for r in stats.readers)] or [AI_MODALITY]
    ai_rows = [r for r in stats.readers if r.is_ai]
    side = min(bottom_in - top_in, (PAGE[0] - 2 * MARGIN) / len(panels) - 1.0)
    for index, modality in enumerate(panels):
        left = MARGIN + 0.6 + index * (side + 1.0)
        axes = page.add_axes((left / PAGE[0], 1.0 - bottom_in / PAGE[1], side / PAGE[0], side / PAGE[1]))
        for row in [r for r in stats.readers if r.modality == modality] + ai_rows:
            curve = roc_curve(*row.roc_scores)
            axes.plot(curve.fpr, curve.tpr, "--" if row.is_ai else "-",
                      label=f"{row.reader}{' (AI)' if row.is_ai else ''}: AUC {row.auc.auc:.3f}"
                            + (f" {FEW_CASES_MARK}" if row.warning else ""))
        axes.plot([0, 1], [0, 1], color="0.8", linewidth=0.8)
        axes.set_title(f"ROC, {modality} reads" if modality != AI_MODALITY else "ROC, AI", fontsize=10)
        axes.set_xlabel("1 - specificity", fontsize=TEXT_PT)
        axes.set_ylabel("sensitivity", fontsize=TEXT_PT)
        axes.tick_params(labelsize=8)
        if axes.get_legend_handles_labels()[0]:
            axes.legend(loc="lower right", fontsize=8)


def _column_widths(header: list[str], rows: list[list[str]]) -> list[float]:
    """Inches per column: its longest cell (a header may wrap onto two lines) at 9 pt."""
    widths = []
    for j, title in enumerate(header):
        cells = max((len(r[j]) for r in rows), default=0)
        words = max(len(w) for w in title.split())
        heading = min(len(title), max(words, (len(title) + 1) // 2 + 1))
        widths.append(CHAR_IN * max(cells, heading, 3) + 0.2)
    return widths


def _header_lines(title: str, width_in: float) -> str:
    return "\n".join(textwrap.wrap(title, max(3, int((width_in - 0.2) / CHAR_IN))) or [title])


def table_pages(stats: StudyStatistics, extra_lines: list[str]) -> list[Figure]:
    """Every statistics table, several to a page, then the lines that did not fit and the notes."""
    pages: list[Figure] = []
    page, top = None, 0.0
    bottom = PAGE[1] - MARGIN
    width = PAGE[0] - 2 * MARGIN

    def new_page() -> tuple[Figure, float]:
        figure = Figure(figsize=PAGE)
        pages.append(figure)
        return figure, MARGIN

    for index, (title, header, rows) in enumerate(statistics_tables(stats)):
        widths = _column_widths(header, rows)
        scale = min(1.0, width / sum(widths))
        widths = [w * scale for w in widths]
        labels = [_header_lines(h, w) for h, w in zip(header, widths, strict=True)]
        header_rows = max(label.count("\n") + 1 for label in labels)
        legend = _wrap([TABLE_LEGEND], width, 8) if index == 0 else []
        chunk_start = 0
        while chunk_start < len(rows) or (not rows and chunk_start == 0):
            if page is None or bottom - top < 0.4 + ROW_IN * (header_rows + 2):
                page, top = new_page()
            fit = max(1, int((bottom - top - 0.4 - ROW_IN * header_rows * 0.75 - LINE_IN * len(legend)) / ROW_IN))
            chunk = rows[chunk_start:chunk_start + fit]
            heading = title + (" (continued)" if chunk_start else "")
            top += _text_block(page, top, _wrap([heading], width, 11), size=11, weight="bold") + 0.05
            height = ROW_IN * (len(chunk) + header_rows * 0.75)
            axes = page.add_axes((MARGIN / PAGE[0], 1.0 - (top + height) / PAGE[1], sum(widths) / PAGE[0],
                                  height / PAGE[1]))
            axes.axis("off")
            if chunk:
                table = axes.table(cellText=chunk, colLabels=labels, cellLoc="center", bbox=(0, 0, 1, 1),
                                   colWidths=[w / sum(widths) for w in widths])
                table.auto_set_font_size(False)
                table.set_fontsize(TEXT_PT)
                for (row, _), cell in table.get_celld().items():
                    cell.set_height(0.75 * header_rows if row == 0 else 1.0)
                    if row == 0:
                        cell.set_facecolor("#eeeeee")
            else:
                axes.text(0, 1, "(nothing to show yet)", fontsize=TEXT_PT, va="top")
            top += height + 0.1
            chunk_start += len(chunk) or 1
            if legend and chunk_start >= len(rows):
                top += _text_block(page, top, legend, color="0.3", size=8)
            top += 0.25
    notes = extra_lines + _wrap([f"Note: {n}" for n in stats.notes], width)
    while notes:
        if page is None or bottom - top < 3 * LINE_IN:
            page, top = new_page()
        room = max(1, int((bottom - top) / LINE_IN))
        top += _text_block(page, top, notes[:room])
        notes = notes[room:]
    return pages


def write_pdf(coordinator: Coordinator, stats: StudyStatistics, path: Path) -> None:
    design = coordinator.design()
    with PdfPages(path) as pdf:
        page, rest = first_page(coordinator, stats)
        pdf.savefig(page)
        for table_page in table_pages(stats, rest):
            pdf.savefig(table_page)
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
