"""Figures that rest on few cases: exact and conservative intervals, warnings, the same cases for
readers and AI, and a PDF report with one page size and readable tables."""

from __future__ import annotations

import math
import re

import numpy as np
import pytest
from _readerstudy_support import PIN, answer_key, make_study
from scipy.stats import binom

from radreview.metrics import auc_ci, wilson_interval
from radreview.metrics.small_sample import (
    auc_conservative_interval,
    clopper_pearson_interval,
    delong_unreliable_reason,
    proportion_interval,
)
from radreview.readerstudy.db import open_database
from radreview.readerstudy.reading import sign_in
from radreview.readerstudy.report import PAGE, first_page, render_html, table_pages, write_report
from radreview.readerstudy.scripted_reader import read_all
from radreview.readerstudy.stats import compute_statistics


def test_clopper_pearson_closed_forms_and_exact_coverage() -> None:
    assert clopper_pearson_interval(0, 10) == (0.0, pytest.approx(1 - 0.025 ** (1 / 10)))
    assert clopper_pearson_interval(10, 10) == (pytest.approx(0.025 ** (1 / 10)), 1.0)
    for n in (4, 9, 20):  # never below the nominal level, computed exactly over the binomial
        bounds = [clopper_pearson_interval(k, n) for k in range(n + 1)]
        for p in np.linspace(0.01, 0.99, 99):
            coverage = sum(binom.pmf(k, n, p) for k, (lo, hi) in enumerate(bounds) if lo <= p <= hi)
            assert coverage >= 0.95 - 1e-9, (n, p, coverage)
    assert proportion_interval(2, 9)[1] == "clopper-pearson"
    wilson, method = proportion_interval(20, 40)
    assert method == "wilson" and (wilson.lower, wilson.upper) == pytest.approx(wilson_interval(20, 40))


def test_conservative_auc_interval_is_not_degenerate_and_covers() -> None:
    y, scores = [1, 1, 1, 0], [0.9, 0.8, 0.7, 0.1]
    delong = auc_ci(y, scores)
    assert (delong.auc, delong.lower, delong.upper) == (1.0, 1.0, 1.0)  # the "1.000 (1.000–1.000)"
    assert "AUC of 1" in delong_unreliable_reason(1.0, 3, 1)
    lower, upper = auc_conservative_interval(1.0, 3, 1)
    assert upper == 1.0 and lower < 0.25
    # seeded simulation: 5 positives and 5 negatives, true AUC 0.76 (normal scores 1 SD apart)
    rng = np.random.default_rng(0)
    true_auc = 0.7602499389065233
    hits = 0
    for _ in range(2000):
        scores = np.r_[rng.normal(1.0, 1.0, 5), rng.normal(0.0, 1.0, 5)]
        estimate = auc_ci([1] * 5 + [0] * 5, scores).auc
        lo, hi = auc_conservative_interval(estimate, 5, 5)
        hits += lo <= true_auc <= hi
    assert hits / 2000 >= 0.95


@pytest.fixture
def small_study(tmp_path, fracatlas_dir):
    """Three readers, six cases; R3 stops two reads early."""
    db = open_database(tmp_path / "study.db")
    coordinator = make_study(db, tmp_path, fracatlas_dir, readers=3, n=6, confidence_scale="both")
    for reader in ("R1", "R2", "R3"):
        read_all(sign_in(db, "wrist-2026", reader, PIN), answer_key(coordinator, reader),
                 limit=None if reader != "R3" else 10)
    yield coordinator
    db.close()


def test_small_samples_are_flagged_and_use_intervals_that_hold(small_study) -> None:
    stats = compute_statistics(small_study)
    assert stats.warnings and all("fewer than 10" in w for w in stats.warnings)
    assert any(w.startswith("MRMC comparison") for w in stats.warnings)
    for figure in stats.readers:
        assert figure.warning and figure.auc_ci_method.startswith("conservative")
        assert figure.auc_upper > figure.auc_lower or figure.auc.auc in (0.0, 1.0)
        assert figure.ci_methods == {"sensitivity": "clopper-pearson", "specificity": "clopper-pearson"}
    html = render_html(small_study, stats)
    assert "<h2>Warnings</h2>" in html and "fewer than 10" in html and "Clopper-Pearson" in html


def test_readers_and_ai_are_measured_on_the_same_cases(small_study) -> None:
    stats = compute_statistics(small_study)
    n_cases = {(f.reader, f.modality): f.n_cases for f in stats.readers}
    assert len(set(n_cases.values())) == 1, n_cases  # AI included
    assert set(n_cases.values()) == {len(stats.cases_used)} and len(stats.cases_used) == 5
    assert any("left out until the others catch up" in note for note in stats.notes)


def test_the_pdf_has_one_page_size_a_full_first_page_and_readable_tables(small_study, tmp_path) -> None:
    stats = compute_statistics(small_study)
    page, rest = first_page(small_study, stats)
    assert len(page.axes) == 2 and rest == []  # the ROC panels share the page with the design
    pages = table_pages(stats, rest)
    for figure in [page, *pages]:
        assert tuple(figure.get_size_inches()) == pytest.approx(PAGE)
        for text in figure.findobj(match=lambda artist: hasattr(artist, "get_fontsize")):
            if getattr(text, "get_text", lambda: "")():
                assert text.get_fontsize() >= 8
    tables = [t for figure in pages for axes in figure.axes for t in axes.tables]
    assert tables and all(cell.get_fontsize() >= 9 for t in tables for cell in t.get_celld().values())
    _, pdf = write_report(small_study, tmp_path / "report.html", tmp_path / "report.pdf")
    boxes = set(re.findall(rb"/MediaBox \[([^\]]+)\]", pdf.read_bytes()))
    assert len(boxes) == 1  # one page size
    width, height = (float(v) for v in boxes.pop().split()[2:])
    assert (width, height) == pytest.approx((PAGE[0] * 72, PAGE[1] * 72))
    assert not math.isnan(width)
