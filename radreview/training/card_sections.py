"""Parts of a model card that training, export and calibration fill alike (torch-free)."""

from __future__ import annotations

from typing import Any

DISPLAY_NAMES = {"fractured": "Fracture", "hardware": "Orthopaedic hardware", "hand": "Hand", "leg": "Leg",
                 "hip": "Hip", "shoulder": "Shoulder"}


def validation_section(meta: dict[str, Any], validation: dict[str, Any] | None) -> dict[str, Any]:
    """The card's ``validation`` section from ``radreview evaluate``'s metrics.json (or the
    checkpoint's own validation AUCs, marked optimistic, when no evaluation is given)."""
    if validation:
        section = {"source": validation.get("description", "radreview evaluate"),
                   "dataset": validation.get("dataset", ""), "split": validation.get("split", ""),
                   "labels": {}}
        for name, figures in validation.get("labels", {}).items():
            auc = figures.get("auc", {})
            section["labels"][name] = {
                "auc": auc.get("auc"), "ci_low": auc.get("low"), "ci_high": auc.get("high"),
                "ci_method": "DeLong 95%", "n_pos": auc.get("n_pos"), "n_neg": auc.get("n_neg"),
                **{k: figures.get("calibration", {}).get(k) for k in ("ece", "brier") if figures.get("calibration")},
                "at_operating_points": {
                    point: {"threshold": stats["threshold"], "sensitivity": stats["sensitivity"]["estimate"],
                            "specificity": stats["specificity"]["estimate"]}
                    for point, stats in figures.get("card_operating_points", {}).items()
                },
            }
            where = validation.get("localisation", {}).get(name)
            if where and where.get("n"):
                section["labels"][name]["pointing_game"] = {
                    k: where[k] for k in ("pointing_game", "hits", "n", "mean_energy_inside_boxes", "positives_at")}
        if validation.get("scope"):
            section["scope"] = {k: validation["scope"][k] for k in ("n", "rejected", "rejected_share", "threshold")}
        return section
    return {"source": "validation split used for early stopping (optimistic; no test-set evaluation given)",
            "labels": {k: {"auc": v} for k, v in meta.get("validation_split", {}).get("auc", {}).items()}}
