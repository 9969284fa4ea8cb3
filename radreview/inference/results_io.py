"""Writing batch predictions: CSV (one row per image and label, then per study and label) or JSON.

Rows carry pseudonymous IDs (``S00001``, ``S00001-I001``: numbered in the order the index lists
studies). Image rows say whether the row's model calls the image inside its scope (``in_scope``
``true``/``false``, empty when the model has no scope check) and the distance behind it; out-of-scope
rows keep their probabilities, with the tier ``out_of_scope``. Study rows count the views that were
left out of the study's mean for being out of scope. Patient keys, UIDs and file paths appear only with ``identifiers=True``. Every row names
the model and its version and the provider that ran; JSON adds a header with the models'
checksums, provider notes and the research-use notice.

JSON also carries ``image_results``: each image's whole result as :mod:`radreview.inference.serialize`
writes it (every label with its tier, cut-offs, scope verdict and heatmap: the calibrated
local-logit map and where the image lay in the model canvas), which is what a reader study needs
to show the AI as the viewer does (``radreview study create --ai results.json``). The key from the
pseudonymous image IDs to the files (:func:`write_key`, ``radreview predict --key FILE``) holds
paths, so it is written only when asked for, beside the results, and the JSON names it.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

from radreview import RESEARCH_USE_NOTICE, __version__
from radreview.inference.batch import BatchResult
from radreview.inference.engine import Engine
from radreview.inference.scope import ScopeVerdict

IMAGE_COLUMNS = ["level", "study_id", "image_id", "model", "version", "task", "label", "probability",
                 "tier", "in_scope", "scope_distance", "scope_threshold", "views", "out_of_scope_views",
                 "regions", "provider", "error"]
IDENTIFIER_COLUMNS = ["patient_id", "study_uid", "sop_instance_uid", "path"]


def rows(result: BatchResult, engine: Engine, identifiers: bool = False) -> list[dict[str, Any]]:
    provider = engine.provider
    out: list[dict[str, Any]] = []
    ids_by_study: dict[str, dict[str, str]] = {}
    for record in result.images:
        ident = ({"patient_id": record.patient_key, "study_uid": record.study_uid,
                  "sop_instance_uid": record.sop_instance_uid, "path": str(record.path)} if identifiers else {})
        ids_by_study.setdefault(record.study_id, {k: v for k, v in ident.items() if k in ("patient_id", "study_uid")})
        if record.error:
            out.append({"level": "image", "study_id": record.study_id, "image_id": record.image_id,
                        "error": _reason(record.error, record.path, identifiers), **ident})
            continue
        regions = ";".join(record.result.regions) if record.result else ""
        scopes = record.result.scopes if record.result else {}
        for label in record.result.labels if record.result else []:
            out.append({"level": "image", "study_id": record.study_id, "image_id": record.image_id,
                        "model": label.model, "version": label.version, "task": label.task, "label": label.label,
                        "probability": round(label.probability, 6), "tier": label.tier,
                        **scope_columns(scopes.get(label.model)), "views": 1,
                        "regions": regions, "provider": provider, **ident})
    for study in result.studies:
        out.append({"level": "study", "study_id": study.study, "image_id": "", "model": study.model,
                    "version": study.version, "task": study.task, "label": study.label,
                    "probability": round(study.probability, 6), "tier": study.tier, "views": study.views,
                    "out_of_scope_views": study.out_of_scope_views,
                    "provider": provider, **ids_by_study.get(study.study, {})})
    return out


def scope_columns(verdict: ScopeVerdict | None) -> dict[str, Any]:
    """``in_scope`` as "true"/"false" ("" without a scope check), the distance and its limit."""
    if verdict is None or verdict.in_scope is None:
        return {"in_scope": "", "scope_distance": "", "scope_threshold": ""}
    return {"in_scope": "true" if verdict.in_scope else "false",
            "scope_distance": "" if verdict.distance is None else round(verdict.distance, 4),
            "scope_threshold": "" if verdict.threshold is None else round(verdict.threshold, 4)}


def _reason(error: str, path: Path, identifiers: bool) -> str:
    """An error message without the file path unless identifiers were asked for."""
    return error if identifiers else error.replace(str(path), path.suffix or "file")


def write_csv(path: str | Path, result: BatchResult, engine: Engine, identifiers: bool = False) -> None:
    columns = IMAGE_COLUMNS + (IDENTIFIER_COLUMNS if identifiers else [])
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=columns, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows(result, engine, identifiers))


def write_json(path: str | Path, result: BatchResult, engine: Engine, identifiers: bool = False,
               key_file: str | Path | None = None) -> None:
    document = {
        "notice": RESEARCH_USE_NOTICE,
        "radreview_version": __version__,
        "provider": engine.provider,
        "provider_notes": engine.provider_notes,
        "models": [{"name": m.card.name, "version": m.card.version, "weights_sha256": m.card.weights_sha256,
                    "file": m.file.path.name, "provider": m.info.provider, "precision": m.card.precision,
                    "scope_check": m.scope is not None, "scope_note": m.scope_note,
                    "calibrated": m.calibrated} for m in engine.models],
        "images": [r for r in rows(result, engine, identifiers) if r["level"] == "image"],
        "studies": [r for r in rows(result, engine, identifiers) if r["level"] == "study"],
        "problems": [{"file": str(p) if identifiers else p.name, "reason": reason} for p, reason in result.problems],
        "seconds": {k: round(v, 3) for k, v in result.seconds.items()},
        "wall_seconds": round(result.wall_seconds, 3),
        "cancelled": result.cancelled,
    }
    document.update(image_results_section(result, identifiers, path, key_file))
    Path(path).write_text(json.dumps(document, indent=1), encoding="utf-8")


def image_results_section(result: BatchResult, identifiers: bool, results_path: str | Path,
                          key_file: str | Path | None = None) -> dict[str, Any]:
    """``image_results`` (one entry per predicted image, its whole result) and the key file's name."""
    from radreview.inference.serialize import IMAGE_RESULT_FORMAT, image_to_dict

    entries = []
    for record in result.images:
        if record.result is None:
            continue
        entry: dict[str, Any] = {"image_id": record.image_id, "study_id": record.study_id,
                                 "result": image_to_dict(record.result)}
        if identifiers:
            entry["path"] = str(record.path)
        entries.append(entry)
    section: dict[str, Any] = {"image_results_format": IMAGE_RESULT_FORMAT, "image_results": entries}
    if key_file is not None:
        key, folder = Path(key_file).resolve(), Path(results_path).resolve().parent
        section["key_file"] = key.name if key.parent == folder else str(key)
    return section


KEY_COLUMNS = ["image_id", "study_id", "path"]


def write_key(path: str | Path, result: BatchResult) -> None:
    """The pseudonymous image IDs and the files they stand for (CSV: image_id, study_id, path).

    It holds file paths, which often carry patient names or accession numbers: keep it with the
    identifiable data, never with the shared results.
    """
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(KEY_COLUMNS)
        for record in result.images:
            writer.writerow([record.image_id, record.study_id, str(Path(record.path).resolve())])


def write_results(path: str | Path, result: BatchResult, engine: Engine, identifiers: bool = False,
                  key_file: str | Path | None = None) -> None:
    """CSV or JSON by the file's suffix (JSON names ``key_file`` when one is written)."""
    suffix = Path(path).suffix.lower()
    if suffix == ".json":
        write_json(path, result, engine, identifiers, key_file)
    elif suffix == ".csv":
        write_csv(path, result, engine, identifiers)
    else:
        raise ValueError(f"{path}: results must be .csv or .json")
