"""Multi-reader multi-case (MRMC) ROC analysis: the entry points.

* :class:`MrmcData` - the fully crossed (reader, modality, case, truth, score) table;
* :func:`or_analysis` - Obuchowski-Rockette with jackknife or DeLong covariances, Hillis ddf;
* :func:`reader_averaged_auc` - per-modality reader-averaged AUC and CI (one modality is enough);
* :func:`dbm_analysis` - Dorfman-Berbaum-Metz pseudovalue ANOVA, Hillis ddf;
* :func:`read_mrmc_csv` - a tidy CSV (one row per read) into :class:`MrmcData`.

Validated in ``tests/test_metrics_mrmc.py`` against the published Van Dyke et al. (1993)
results of OR-DBM MRMC 2.51, MRMCaov and RJafroc.
"""

from __future__ import annotations

import csv
from collections.abc import Sequence
from pathlib import Path

from radreview.metrics.dbm import DbmResult, dbm_analysis, pseudovalues
from radreview.metrics.mrmc_data import MrmcData
from radreview.metrics.obuchowski_rockette import CovarianceComponents, ORResult, or_analysis, reader_averaged_auc
from radreview.metrics._mrmc_results import Comparison, ModalityEstimate, MrmcTest, ReaderComparison

__all__ = [
    "Comparison",
    "CovarianceComponents",
    "DbmResult",
    "ModalityEstimate",
    "MrmcData",
    "MrmcTest",
    "ORResult",
    "ReaderComparison",
    "dbm_analysis",
    "or_analysis",
    "pseudovalues",
    "read_mrmc_csv",
    "reader_averaged_auc",
]


def read_mrmc_csv(
    path: str | Path,
    *,
    reader: str = "reader",
    modality: str = "modality",
    case: str = "case",
    truth: str = "truth",
    score: str = "score",
    modality_order: Sequence[str] | None = None,
) -> MrmcData:
    """Read a tidy CSV (one row per read); the keyword arguments name its columns."""
    path = Path(path)
    try:
        with path.open(newline="", encoding="utf-8-sig") as fh:
            rows = list(csv.DictReader(fh))
    except OSError as exc:
        raise ValueError(f"{path}: cannot read MRMC table ({exc.strerror or exc})") from None
    if not rows:
        raise ValueError(f"{path}: the MRMC table has no rows")
    names = {"reader": reader, "modality": modality, "case": case, "truth": truth, "score": score}
    missing = [col for col in names.values() if col not in rows[0]]
    if missing:
        raise ValueError(f"{path}: missing column(s) {', '.join(missing)}; found {', '.join(rows[0])}")
    try:
        return MrmcData.from_columns(
            [r[reader] for r in rows],
            [r[modality] for r in rows],
            [r[case] for r in rows],
            [r[truth] for r in rows],
            [_number(r[score], path, line) for line, r in enumerate(rows, start=2)],
            modality_order,
        )
    except ValueError as exc:
        raise ValueError(f"{path}: {exc}") from None


def _number(text: str, path: Path, line: int) -> float:
    try:
        return float(text)
    except (TypeError, ValueError):
        raise ValueError(f"{path}, line {line}: score {text!r} is not a number") from None
