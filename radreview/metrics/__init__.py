"""radreview.metrics: pure numpy statistics shared by training, evaluation and reader studies.

Modules (one topic each; every formula and its source is in the module docstring):

* ``roc`` - empirical ROC curve (scikit-learn's conventions) and Mann-Whitney AUC;
* ``delong`` - DeLong placement values, variance/covariance of correlated AUCs, CIs
  (Wald or logit), paired/unpaired/global tests (Sun & Xu 2014 mid-rank algorithm);
* ``operating_points`` - counts, sensitivity/specificity/PPV/NPV with Wilson CIs; Youden,
  fixed-sensitivity and fixed-specificity thresholds;
* ``bootstrap`` - percentile/basic/BCa bootstrap CIs, seeded, optionally stratified;
* ``agreement`` - percent agreement, Cohen's kappa (weighted) with SEs, Fleiss' kappa,
  decision changes (unaided -> aided);
* ``mcnemar`` - McNemar's test for paired proportions;
* ``calibration`` - reliability curve, ECE/MCE, Brier score, temperature/Platt scaling;
* ``distributions`` - normal, chi-square, t and F tails and quantiles, the exact binomial
  test for p = 1/2, mid-ranks (plain Python: the frozen app carries no scipy);
* ``mrmc`` (``mrmc_data``, ``obuchowski_rockette``, ``dbm``) - multi-reader multi-case ROC
  analysis: Obuchowski-Rockette with jackknife/DeLong covariances and Hillis ddf, and
  Dorfman-Berbaum-Metz, reproducing the published Van Dyke results.

Every result is a frozen dataclass with ``to_dict()`` giving strict-JSON values.
"""


from radreview.metrics.agreement import (
    DecisionChanges,
    KappaResult,
    agreement_proportion,
    agreement_weights,
    cohen_kappa,
    cohen_kappa_from_table,
    decision_changes,
    fleiss_kappa,
    percent_agreement,
    ratings_to_counts,
)
from radreview.metrics.bootstrap import BootstrapResult, bootstrap_ci, bootstrap_indices
from radreview.metrics.calibration import (
    LogitCalibration,
    ReliabilityCurve,
    brier_score,
    expected_calibration_error,
    fit_logit_calibration,
    maximum_calibration_error,
    reliability_curve,
)
from radreview.metrics.delong import (
    AucInterval,
    DeLongGlobalTest,
    DeLongTest,
    PlacementValues,
    auc_ci,
    delong_covariance,
    delong_global_test,
    delong_test,
    delong_test_unpaired,
    delong_variance,
    placement_values,
)
from radreview.metrics.mcnemar import McNemarResult, mcnemar_from_counts, mcnemar_test
from radreview.metrics.mrmc import (
    Comparison,
    CovarianceComponents,
    DbmResult,
    ModalityEstimate,
    MrmcData,
    MrmcTest,
    ORResult,
    ReaderComparison,
    dbm_analysis,
    or_analysis,
    read_mrmc_csv,
    reader_averaged_auc,
)
from radreview.metrics.operating_points import (
    ConfusionCounts,
    OperatingPoint,
    Proportion,
    confusion_counts,
    operating_point,
    operating_point_from_counts,
    proportion,
    threshold_for_sensitivity,
    threshold_for_specificity,
    wilson_interval,
    youden_threshold,
)
from radreview.metrics.roc import RocCurve, roc_auc, roc_curve

__all__ = [
    "AucInterval",
    "BootstrapResult",
    "Comparison",
    "ConfusionCounts",
    "CovarianceComponents",
    "DbmResult",
    "DeLongGlobalTest",
    "DeLongTest",
    "DecisionChanges",
    "KappaResult",
    "McNemarResult",
    "ModalityEstimate",
    "MrmcData",
    "MrmcTest",
    "ORResult",
    "OperatingPoint",
    "PlacementValues",
    "Proportion",
    "ReaderComparison",
    "ReliabilityCurve",
    "RocCurve",
    "agreement_proportion",
    "agreement_weights",
    "auc_ci",
    "bootstrap_ci",
    "bootstrap_indices",
    "brier_score",
    "cohen_kappa",
    "cohen_kappa_from_table",
    "confusion_counts",
    "dbm_analysis",
    "decision_changes",
    "delong_covariance",
    "delong_global_test",
    "delong_test",
    "delong_test_unpaired",
    "delong_variance",
    "expected_calibration_error",
    "fit_logit_calibration",
    "LogitCalibration",
    "fleiss_kappa",
    "maximum_calibration_error",
    "mcnemar_from_counts",
    "mcnemar_test",
    "operating_point",
    "operating_point_from_counts",
    "or_analysis",
    "percent_agreement",
    "placement_values",
    "proportion",
    "ratings_to_counts",
    "read_mrmc_csv",
    "reader_averaged_auc",
    "reliability_curve",
    "roc_auc",
    "roc_curve",
    "threshold_for_sensitivity",
    "threshold_for_specificity",
    "wilson_interval",
    "youden_threshold",
]
