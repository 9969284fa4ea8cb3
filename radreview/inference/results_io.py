"""Writing batch predictions: CSV (one row per image and label, then per study and label) or JSON.

Rows carry pseudonymous IDs (``S00001``, ``S00001-I001``: numbered in the order the index lists
studies). Image rows say whether the row's model calls the image inside its scope (``in_scope``
``true``/``false``, empty when the model has no scope check) and the distance behind it; out-of-scope
rows keep their probabilities, with the tier ``out_of_scope``. Study rows count the views that were
left out of the study's mean for being out of scope. Patient keys, UIDs and file paths appear only with ``identifiers=True``. Every row names
the model and its version and the provider that ran; JSON adds a header with the models'
checksums, provider notes and the research-use notice.

A model that failed on an image gets a row of its own with the reason in ``error`` (the other
models' rows stand); an image that could not be read gets one ``error`` row. CSV cells that a
spreadsheet would run as formulas are neutralised, and file names with undecodable bytes are
written with ``\\xNN`` escapes, in CSV and JSON alike (:mod:`radreview.csv_safety`).

JSON also carries ``image_results``: each image's whole result as :mod:`radreview.inference.serialize`
writes it (every label with its tier, cut-offs, scope verdict and heatmap: the calibrated
local-logit map and where the image lay in the model canvas), which is what a reader study needs
to show the AI as the viewer does (``radreview study create --ai results.json``). The key from the
pseudonymous image IDs to the files (:func:`write_key`, ``radreview predict --key FILE``) holds
paths, so it is written only when asked for, beside the results, and the JSON names it.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from radreview import RESEARCH_USE_NOTICE, __version__
from radreview.csv_safety import SafeDictWriter, SafeWriter, escape_undecodable, path_text
from radreview.inference.batch import BatchResult, ImageRecord
from radreview.inference.engine import Engine
from radreview.inference.scope import ScopeVerdict

IMAGE_COLUMNS = ["level", "study_id", "image_id", "model", "version", "task", "label", "probability",
                 "tier", "in_scope", "scope_distance", "scope_threshold", "views", "out_of_scope_views",
                 "regions", "provider", "error"]
IDENTIFIER_COLUMNS = ["patient_id", "study_uid", "sop_instance_uid", "path"]


def image_rows(record: ImageRecord, provider: str, identifiers: bool = False) -> list[dict[str, Any]]:
    """The rows of one image: one per label, one per model that failed on it, or one error row."""
    ident = identifier_columns(record) if identifiers else {}
    if record.error:
        return [{"level": "image", "study_id": record.study_id, "image_id": record.image_id,
                 "error": _reason(record.error, record.path, identifiers), **ident}]
    out: list[dict[str, Any]] = []
    result = record.result
    regions = ";".join(result.regions) if result else ""
    scopes = result.scopes if result else {}
    for label in result.labels if result else []:
        out.append({"level": "image", "study_id": record.study_id, "image_id": record.image_id,
                    "model": label.model, "version": label.version, "task": label.task, "label": label.label,
                    "probability": round(label.probability, 6), "tier": label.tier,
                    **scope_columns(scopes.get(label.model)), "views": 1,
                    "regions": regions, "provider": provider, **ident})
    for model, reason in (result.errors.items() if result else ()):
        out.append({"level": "image", "study_id": record.study_id, "image_id": record.image_id,
                    "model": model, "provider": provider, "error": _reason(reason, record.path, identifiers), **ident})
    return out


def identifier_columns(record: ImageRecord) -> dict[str, str]:
    return {"patient_id": record.patient_key, "study_uid": record.study_uid,
            "sop_instance_uid": record.sop_instance_uid, "path": path_text(record.path)}


def study_rows(result: BatchResult, provider: str, identifiers: bool = False) -> list[dict[str, Any]]:
    ids_by_study: dict[str, dict[str, str]] = {}
    if identifiers:
        for record in result.images:
            ids_by_study.setdefault(record.study_id, {"patient_id": record.patient_key, "study_uid": record.study_uid})
    return [{"level": "study", "study_id": study.study, "image_id": "", "model": study.model,
             "version": study.version, "task": study.task, "label": study.label,
             "probability": round(study.probability, 6), "tier": study.tier, "views": study.views,
             "out_of_scope_views": study.out_of_scope_views,
             "provider": provider, **ids_by_study.get(study.study, {})} for study in result.studies]


def rows(result: BatchResult, engine: Engine, identifiers: bool = False) -> list[dict[str, Any]]:
    """Every row: each image's (in index order), then each study's."""
    provider = engine.provider
    out = [row for record in result.images for row in image_rows(record, provider, identifiers)]
    return out + study_rows(result, provider, identifiers)


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


def partial_path(path: str | Path) -> Path:
    """Where results go while ``predict`` runs: ``results.csv.partial`` next to ``results.csv``."""
    path = Path(path)
    return path.with_name(path.name + ".partial")


class ResultsWriter:
    """Writes ``predict``'s results as they come, so that a crash loses at most the image in flight.

    Each finished image's rows go to ``OUT.partial`` at once (CSV rows, or JSON Lines for a
    ``.json`` result), flushed. :meth:`finish` completes the file (study rows; the JSON document
    built from the same records) and puts it in place of ``OUT`` in one rename; until then ``OUT``
    is untouched, and after a crash ``OUT.partial`` holds every image done.
    CSV cells go through :mod:`radreview.csv_safety` (no formulas run, undecodable bytes escaped).
    """

    def __init__(self, path: str | Path, engine: Engine, identifiers: bool = False,
                 key_file: str | Path | None = None) -> None:
        self.path = Path(path)
        self.key_file = key_file
        self.kind = self.path.suffix.lower()
        if self.kind not in (".csv", ".json"):
            raise ValueError(f"{path}: results must be .csv or .json")
        self.engine = engine
        self.identifiers = identifiers
        self.partial = partial_path(self.path)
        self._handle = open(self.partial, "w", newline="", encoding="utf-8")  # noqa: SIM115 - closed in finish/close
        self._csv: SafeDictWriter | None = None
        if self.kind == ".csv":
            columns = IMAGE_COLUMNS + (IDENTIFIER_COLUMNS if identifiers else [])
            self._csv = SafeDictWriter(self._handle, fieldnames=columns, extrasaction="ignore")
            self._csv.writeheader()
            self._handle.flush()

    def add(self, record: ImageRecord) -> None:
        """One image's rows, written and flushed now."""
        image = image_rows(record, self.engine.provider, self.identifiers)
        if self._csv is not None:
            self._csv.writerows(image)
        else:
            for row in image:
                self._handle.write(json.dumps(_json_safe(row)) + "\n")
        self._handle.flush()

    def finish(self, result: BatchResult) -> None:
        """Study rows (CSV) or the whole document (JSON), then ``OUT.partial`` becomes ``OUT``."""
        if self._csv is not None:
            self._csv.writerows(study_rows(result, self.engine.provider, self.identifiers))
            self._handle.close()
            os.replace(self.partial, self.path)
            return
        self._handle.close()
        staging = self.path.with_name(self.path.name + ".writing")
        write_json(staging, result, self.engine, self.identifiers, self.key_file, self.path)
        os.replace(staging, self.path)
        self.partial.unlink(missing_ok=True)

    def close(self) -> None:
        """Stop without finishing: ``OUT.partial`` stays, holding what was done."""
        if not self._handle.closed:
            self._handle.close()


def _json_safe(value: Any) -> Any:
    """Text with undecodable file-name bytes escaped, everywhere in a JSON value."""
    if isinstance(value, str):
        return escape_undecodable(value)
    if isinstance(value, dict):
        return {escape_undecodable(str(k)): _json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_json_safe(v) for v in value]
    return value


def write_csv(path: str | Path, result: BatchResult, engine: Engine, identifiers: bool = False) -> None:
    columns = IMAGE_COLUMNS + (IDENTIFIER_COLUMNS if identifiers else [])
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = SafeDictWriter(handle, fieldnames=columns, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows(result, engine, identifiers))


def write_json(path: str | Path, result: BatchResult, engine: Engine, identifiers: bool = False,
               key_file: str | Path | None = None, results_path: str | Path | None = None) -> None:
    """The JSON document; ``results_path`` is where it will end up when ``path`` is a staging name."""
    all_rows = rows(result, engine, identifiers)
    document = {
        "notice": RESEARCH_USE_NOTICE,
        "radreview_version": __version__,
        "provider": engine.provider,
        "provider_notes": engine.provider_notes,
        "models": [{"name": m.card.name, "version": m.card.version, "weights_sha256": m.card.weights_sha256,
                    "file": m.file.path.name, "provider": m.info.provider, "precision": m.card.precision,
                    "scope_check": m.scope is not None, "scope_note": m.scope_note,
                    "calibrated": m.calibrated} for m in engine.models],
        "images": [r for r in all_rows if r["level"] == "image"],
        "studies": [r for r in all_rows if r["level"] == "study"],
        "problems": problem_rows(result, identifiers),
        "seconds": {k: round(v, 3) for k, v in result.seconds.items()},
        "wall_seconds": round(result.wall_seconds, 3),
        "cancelled": result.cancelled,
    }
    document.update(image_results_section(result, identifiers, results_path or path, key_file))
    Path(path).write_text(json.dumps(_json_safe(document), indent=1), encoding="utf-8")


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


def problem_id(number: int) -> str:
    """The pseudonymous ID of the ``number``-th file that could not be used (P0001, ...)."""
    return f"P{number:04d}"


def problem_rows(result: BatchResult, identifiers: bool = False) -> list[dict[str, Any]]:
    """The files that could not be used, each with its reason. Without identifiers a file is a
    pseudonymous ID and its type (file names often carry patient names); the key file maps the
    ID back to the file."""
    out = []
    for number, (path, reason) in enumerate(result.problems, start=1):
        path = Path(path)
        row: dict[str, Any] = {"problem_id": problem_id(number)}
        row.update({"file": str(path)} if identifiers else {"file_type": path.suffix.lower() or "file"})
        # the reason may name the file by its path or by its name alone
        hidden = _reason(reason, path, False).replace(path.name, path.suffix or "file")
        row["reason"] = reason if identifiers else hidden
        out.append(row)
    return out


def write_key(path: str | Path, result: BatchResult) -> None:
    """The pseudonymous image IDs and the files they stand for (CSV: image_id, study_id, path).

    It holds file paths, which often carry patient names or accession numbers: keep it with the
    identifiable data, never with the shared results. Files that could not be used follow, as
    their problem IDs (P0001, ...) with no study.
    """
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = SafeWriter(handle)
        writer.writerow(KEY_COLUMNS)
        for record in result.images:
            writer.writerow([record.image_id, record.study_id, str(Path(record.path).resolve())])
        for number, (path, _) in enumerate(result.problems, start=1):  # files that could not be used
            writer.writerow([problem_id(number), "", str(Path(path).resolve())])


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
