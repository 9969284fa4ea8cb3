"""The scope check: is an image like the ones a model was trained on?

A model answers only for images like its training images. Its file says how to tell: the pooled
backbone features of an image (a graph output, ``features`` [N, D]) are compared with the
distribution of the training images' features by a Mahalanobis distance with a shrunk covariance
(Lee et al. 2018, "A simple unified framework for detecting out-of-distribution samples";
Ledoit and Wolf 2004 for the shrinkage). No out-of-scope image is needed to build it: the mean and
covariance come from the training split, and the threshold is a high percentile (99th by default)
of the validation split's distances, so about 1% of in-scope images are expected to be rejected.

The covariance is stored compactly in its eigenbasis: the top ``k`` principal directions with
their (shrunk) variances, and one variance for the remaining ``D - k`` directions. The distance is

    d^2 = sum_j (v_j . x)^2 / lambda_j + (|x|^2 - sum_j (v_j . x)^2) / lambda_rest,   x = f - mean,

reported as ``sqrt(d^2 / D)`` so that a typical in-scope image sits near 1.

A model may carry several checks over different graph outputs (:class:`ScopeSet`): the pooled
head features, which training shapes for the labels, and ``lower_features`` (per-channel mean and
standard deviation of the frozen lower stages' feature map), which keep the generic ImageNet
view of "what kind of picture is this". Fine-tuning with heavy augmentation can teach the head
features to ignore exactly what tells a radiograph from a blank page; the lower stages never
change, so their check still does. An image is in scope only when every check accepts it; with
``k`` checks each threshold is the ``100 - (100 - p) / k``th percentile so that at most about
``100 - p`` % of validation images are rejected in all.

numpy only; the card stores the arrays as base64 float32 (little endian).
"""

from __future__ import annotations

import base64
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

SCOPE_METHOD = "mahalanobis-shrinkage/1"
SCOPE_SET_METHOD = "all-of/1"
FEATURES_OUTPUT = "features"
LOWER_FEATURES_OUTPUT = "lower_features"
SCOPE_OUTPUTS = (FEATURES_OUTPUT, LOWER_FEATURES_OUTPUT)  # the graph outputs a check is fitted on, in order
MAX_CHECKS = 4
DEFAULT_PERCENTILE = 99.0
DEFAULT_COMPONENTS = 256

ScopeStatus = Literal["in_scope", "out_of_scope", "no_check"]


class ScopeError(ValueError):
    """Scope statistics that cannot be used (the message says which field and why)."""


@dataclass(frozen=True, eq=False)
class ScopeCheck:
    """The statistics a model card stores for its scope check."""

    mean: np.ndarray  # [D]
    components: np.ndarray  # [k, D], orthonormal rows
    variances: np.ndarray  # [k], shrunk eigenvalues of the top directions
    residual_variance: float  # shrunk variance of every remaining direction
    threshold: float  # distances above this are out of scope
    percentile: float = DEFAULT_PERCENTILE
    output: str = FEATURES_OUTPUT
    shrinkage: float = 0.0
    reference: dict[str, Any] = field(default_factory=dict)  # splits and counts it was fitted on

    @property
    def dim(self) -> int:
        return int(self.mean.shape[0])

    def distance(self, features: np.ndarray) -> np.ndarray:
        """Normalised Mahalanobis distance [N] of pooled features [N, D] (or [D])."""
        x = np.atleast_2d(np.asarray(features, dtype=np.float64)) - self.mean
        if x.shape[1] != self.dim:
            raise ScopeError(f"features have {x.shape[1]} values, the scope check expects {self.dim}")
        projected = x @ self.components.T.astype(np.float64)
        along = np.sum(projected**2, axis=1)
        rest = np.maximum(np.sum(x**2, axis=1) - along, 0.0)
        d2 = np.sum(projected**2 / self.variances, axis=1) + rest / self.residual_variance
        return np.sqrt(d2 / self.dim)

    # -- card (de)serialisation ---------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        return {
            "method": SCOPE_METHOD,
            "output": self.output,
            "dim": self.dim,
            "components": int(self.components.shape[0]),
            "mean": _encode(self.mean),
            "directions": _encode(self.components),
            "variances": [float(v) for v in self.variances],
            "residual_variance": float(self.residual_variance),
            "shrinkage": float(self.shrinkage),
            "threshold": float(self.threshold),
            "percentile": float(self.percentile),
            "reference": dict(self.reference),
            "encoding": "base64 float32 little-endian",
        }

    @classmethod
    def from_dict(cls, raw: Any) -> ScopeCheck:
        """Parse and check the card's ``scope`` section; raise :class:`ScopeError` naming the field."""
        if not isinstance(raw, dict):
            raise ScopeError("'scope' is not an object")
        if raw.get("method") != SCOPE_METHOD:
            raise ScopeError(f"unknown scope method {raw.get('method')!r} (expected {SCOPE_METHOD})")
        dim = _positive_int(raw, "dim")
        k = _positive_int(raw, "components", allow_zero=True)
        if k > dim:
            raise ScopeError(f"'components' ({k}) exceeds 'dim' ({dim})")
        mean = _decode(raw, "mean", (dim,))
        directions = _decode(raw, "directions", (k, dim))
        variances = np.asarray(_number_list(raw, "variances", k), dtype=np.float64)
        residual = _positive_number(raw, "residual_variance")
        threshold = _positive_number(raw, "threshold")
        if np.any(variances <= 0):
            raise ScopeError("'variances' must be positive")
        output = raw.get("output", FEATURES_OUTPUT)
        if not isinstance(output, str) or not output:
            raise ScopeError("'output' must name a graph output")
        reference = raw.get("reference", {})
        return cls(mean=mean.astype(np.float64), components=directions, variances=variances,
                   residual_variance=residual, threshold=threshold,
                   percentile=float(raw.get("percentile", DEFAULT_PERCENTILE)), output=output,
                   shrinkage=float(raw.get("shrinkage", 0.0)),
                   reference=reference if isinstance(reference, dict) else {})


@dataclass(frozen=True, eq=False)
class ScopeSet:
    """A model's scope check: one or more :class:`ScopeCheck` over different graph outputs; an
    image is in scope only when every one accepts it."""

    checks: tuple[ScopeCheck, ...]
    percentile: float = DEFAULT_PERCENTILE  # the overall share of validation images kept

    @property
    def outputs(self) -> tuple[str, ...]:
        return tuple(check.output for check in self.checks)

    def judge(self, features: Mapping[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        """(distance [N], threshold [N]) of the deciding check per image: the one furthest past its
        threshold (relative to it), so the image is out of scope exactly when distance > threshold."""
        ratios, distances, thresholds = [], [], []
        for check in self.checks:
            if check.output not in features:
                raise ScopeError(f"the scope check needs graph output {check.output!r}")
            d = check.distance(features[check.output])
            d = np.where(np.isfinite(d), d, np.inf)
            distances.append(d)
            thresholds.append(np.full_like(d, check.threshold))
            ratios.append(d / check.threshold)
        pick = np.argmax(np.stack(ratios), axis=0)
        rows = np.arange(len(pick))
        return np.stack(distances)[pick, rows], np.stack(thresholds)[pick, rows]

    def rejected(self, features: Mapping[str, np.ndarray]) -> np.ndarray:
        """Boolean [N]: out of scope."""
        distance, threshold = self.judge(features)
        return ~(distance <= threshold)

    def to_dict(self) -> dict[str, Any]:
        if len(self.checks) == 1:  # single-check cards keep the original layout
            return self.checks[0].to_dict()
        return {"method": SCOPE_SET_METHOD, "percentile": float(self.percentile),
                "checks": [check.to_dict() for check in self.checks]}

    @classmethod
    def from_dict(cls, raw: Any) -> ScopeSet:
        """Parse the card's ``scope`` section (one check, or ``all-of`` several)."""
        if not isinstance(raw, dict):
            raise ScopeError("'scope' is not an object")
        if raw.get("method") != SCOPE_SET_METHOD:
            check = ScopeCheck.from_dict(raw)
            return cls((check,), check.percentile)
        items = raw.get("checks")
        if not isinstance(items, list) or not 1 <= len(items) <= MAX_CHECKS:
            raise ScopeError(f"'checks' must be a list of 1 to {MAX_CHECKS} scope checks")
        checks = []
        for number, item in enumerate(items, 1):
            try:
                checks.append(ScopeCheck.from_dict(item))
            except ScopeError as exc:
                raise ScopeError(f"check {number}: {exc}") from exc
        outputs = [check.output for check in checks]
        if len(set(outputs)) != len(outputs):
            raise ScopeError(f"two checks read the same graph output ({outputs})")
        percentile = raw.get("percentile", DEFAULT_PERCENTILE)
        if isinstance(percentile, bool) or not isinstance(percentile, (int, float)) or not 0 < percentile <= 100:
            raise ScopeError(f"'percentile' must be a number in (0, 100], got {percentile!r}")
        return cls(tuple(checks), float(percentile))


@dataclass(frozen=True)
class ScopeVerdict:
    """One model's answer to "is this image inside what I was trained on?"."""

    model: str
    status: ScopeStatus
    distance: float | None = None
    threshold: float | None = None
    note: str = ""  # why there is no check, when there is none

    @property
    def in_scope(self) -> bool | None:
        """True / False, or None when the model has no scope check."""
        return None if self.status == "no_check" else self.status == "in_scope"


# -- fitting (training and export time) -------------------------------------------------------
def ledoit_wolf_shrinkage(x: np.ndarray) -> float:
    """The Ledoit-Wolf (2004) shrinkage intensity towards a scaled identity for centred rows ``x``."""
    n, d = x.shape
    if n < 2:
        return 1.0
    cov = x.T @ x / n
    mu = float(np.trace(cov)) / d
    delta = cov.copy()
    delta[np.diag_indices(d)] -= mu
    d2 = float(np.sum(delta**2)) / d
    x2 = x**2
    beta_bar = float(np.sum(x2.T @ x2) / n - np.sum(cov**2)) / (d * n)
    beta = min(beta_bar, d2)
    return 0.0 if d2 <= 0 else beta / d2


def fit_scope(
    fit_features: np.ndarray,
    threshold_features: np.ndarray,
    percentile: float = DEFAULT_PERCENTILE,
    components: int = DEFAULT_COMPONENTS,
    reference: dict[str, Any] | None = None,
    output: str = FEATURES_OUTPUT,
) -> ScopeCheck:
    """Fit mean and shrunk covariance on ``fit_features`` [n, D] (the training split) and set the
    threshold at ``percentile`` of the distances of ``threshold_features`` (the validation split)."""
    fit = np.asarray(fit_features, dtype=np.float64)
    held = np.asarray(threshold_features, dtype=np.float64)
    if fit.ndim != 2 or held.ndim != 2 or fit.shape[1] != held.shape[1]:
        raise ScopeError(f"feature arrays must be [n, D] alike, got {fit.shape} and {held.shape}")
    if len(fit) < 10 or len(held) < 10:
        raise ScopeError(f"too few images to fit a scope check ({len(fit)} fit, {len(held)} threshold; need 10 each)")
    if not (np.all(np.isfinite(fit)) and np.all(np.isfinite(held))):
        raise ScopeError("features contain NaN or infinite values")
    n, d = fit.shape
    mean = fit.mean(axis=0)
    centred = fit - mean
    alpha = ledoit_wolf_shrinkage(centred)
    cov = centred.T @ centred / n
    eigenvalues, eigenvectors = np.linalg.eigh(cov)
    order = np.argsort(eigenvalues)[::-1]
    eigenvalues, eigenvectors = np.maximum(eigenvalues[order], 0.0), eigenvectors[:, order]
    mu = float(np.sum(eigenvalues)) / d
    floor = max(mu, 1e-12) * 1e-6  # a direction with no variance at all must not divide by zero
    shrunk = np.maximum((1 - alpha) * eigenvalues + alpha * mu, floor)
    k = int(min(components, d, max(1, n - 1)))
    rest = shrunk[k:]
    residual = float(rest.mean()) if len(rest) else float(shrunk[-1])
    check = ScopeCheck(mean=mean, components=eigenvectors[:, :k].T.astype(np.float32).astype(np.float64),
                       variances=shrunk[:k], residual_variance=residual, threshold=1.0,
                       percentile=percentile, output=output, shrinkage=alpha, reference=dict(reference or {}))
    # round-trip through float32, as the card stores it, before setting the threshold
    check = ScopeCheck.from_dict({**check.to_dict(), "threshold": 1.0})
    distances = check.distance(held)
    threshold = float(np.percentile(distances, percentile))
    return ScopeCheck.from_dict({**check.to_dict(), "threshold": threshold,
                                 "reference": {**check.reference, "n_fit": int(n), "n_threshold": int(len(held))}})


def fit_scope_set(
    fit_features: Mapping[str, np.ndarray],
    threshold_features: Mapping[str, np.ndarray],
    percentile: float = DEFAULT_PERCENTILE,
    components: int = DEFAULT_COMPONENTS,
    reference: dict[str, Any] | None = None,
) -> ScopeSet:
    """One check per graph output in ``fit_features`` (training split) thresholded on
    ``threshold_features`` (validation split), each at ``100 - (100 - percentile) / k``."""
    outputs = [*scope_outputs_among(fit_features), *(name for name in fit_features if name not in SCOPE_OUTPUTS)]
    if not outputs:
        raise ScopeError("no features to fit a scope check on")
    each = 100.0 - (100.0 - percentile) / len(outputs)
    checks = tuple(fit_scope(fit_features[name], threshold_features[name], percentile=each, components=components,
                             reference=reference, output=name) for name in outputs)
    return ScopeSet(checks, percentile if len(checks) > 1 else each)


def scope_outputs_among(names) -> list[str]:
    """The scope-feature outputs among graph output ``names`` (or a dict's keys), in fitting order."""
    present = set(names)
    return [name for name in SCOPE_OUTPUTS if name in present]


def rejection_rate(scope: ScopeCheck | ScopeSet, features: np.ndarray | Mapping[str, np.ndarray]) -> float:
    """Share of images that the check (features [N, D]) or set (features by output) calls out of scope."""
    if isinstance(scope, ScopeCheck):
        distances = scope.distance(features)
        return float(np.mean(~(distances <= scope.threshold))) if len(distances) else math.nan
    rejected = scope.rejected(features)
    return float(np.mean(rejected)) if len(rejected) else math.nan


# -- helpers ---------------------------------------------------------------------------------
def _encode(array: np.ndarray) -> str:
    return base64.b64encode(np.ascontiguousarray(array, dtype="<f4").tobytes()).decode("ascii")


def _decode(raw: dict, key: str, shape: tuple[int, ...]) -> np.ndarray:
    value = raw.get(key)
    if not isinstance(value, str):
        raise ScopeError(f"'{key}' is missing or not base64 text")
    try:
        data = base64.b64decode(value.encode("ascii"), validate=True)
    except (ValueError, UnicodeEncodeError) as exc:
        raise ScopeError(f"'{key}' is not valid base64 ({exc})") from exc
    expected = int(np.prod(shape)) * 4
    if len(data) != expected:
        raise ScopeError(f"'{key}' holds {len(data) // 4} values, expected {expected // 4} for shape {list(shape)}")
    array = np.frombuffer(data, dtype="<f4").reshape(shape).astype(np.float64)
    if not np.all(np.isfinite(array)):
        raise ScopeError(f"'{key}' contains NaN or infinite values")
    return array


def _positive_int(raw: dict, key: str, allow_zero: bool = False) -> int:
    value = raw.get(key)
    if not isinstance(value, int) or isinstance(value, bool) or value < (0 if allow_zero else 1):
        raise ScopeError(f"'{key}' must be a {'non-negative' if allow_zero else 'positive'} integer, got {value!r}")
    return value


def _positive_number(raw: dict, key: str) -> float:
    value = raw.get(key)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
        raise ScopeError(f"'{key}' must be a positive finite number, got {value!r}")
    return float(value)


def _number_list(raw: dict, key: str, length: int) -> list[float]:
    value = raw.get(key)
    if not isinstance(value, list) or len(value) != length:
        raise ScopeError(f"'{key}' must be a list of {length} numbers")
    if not all(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in value):
        raise ScopeError(f"'{key}' contains a value that is not a finite number")
    return [float(v) for v in value]

