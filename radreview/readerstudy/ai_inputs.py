"""The AI of a reader study: from ``radreview predict``'s results, or computed here from models.

Every way in ends as :class:`~radreview.readerstudy.design.AIOutputSpec` per case and model:
the case-level probability of the study's label (statistics use it), its tier and scope verdict,
and — when the source has them — each image's whole engine result (labels with tiers, cut-offs,
scope, and the heatmap as calibrated local logits with its letterbox geometry), stored with the
case so that the reading window rebuilds exactly what the viewer would show
(:mod:`radreview.inference.serialize`, :func:`radreview.inference.presentation.present_image`).

Sources:
- ``radreview predict ... --out results.json`` (its default output): ``image_results`` carry the
  whole results under pseudonymous image IDs; the key predict writes with ``--key FILE`` (named in
  the JSON, or given as ``key``) links them to the case list's files. ``--identifiers`` output
  carries the paths itself;
- CSV or JSON rows of ``case_id`` (or ``image``/``path``, or a pseudonymous ``image_id`` with the
  key), ``model``, ``probability`` [, ``label``, ``task``, ``heatmap``]: probabilities only;
- models (:func:`compute_ai_outputs`): the engine runs on the case images here.

A case with several images takes, per model, the highest probability among its images inside the
model's scope (the study-level answer is "present if seen on any view"; an image the model calls
out of scope does not count unless no image is in scope). Sham cases (``sham_payload``) show the
mirrored probability ``1 - p`` on every image, its tier from the same cut-offs, and the map moved by
the same change of logit, so what the reader sees stays coherent.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

from radreview.readerstudy.design import AIOutputSpec, CaseSpec, StudyDesignError

STUDY_AI_FORMAT = "radreview.study_ai/1"
REGION_TASK = "region"
KEY_HINT = ("run predict with --key FILE beside the results (the key links its pseudonymous image IDs to "
            "the files), give that key with --ai-key FILE, or let study create run the models itself "
            "(--model MODELS)")


# -- predict's results -------------------------------------------------------------------------
def read_ai_outputs(path: str | Path, cases: list[CaseSpec], label: str | None = None,
                    key: str | Path | None = None) -> list[AIOutputSpec]:
    """AI outputs per case from a predict results file (JSON or CSV) or a CSV/JSON of rows."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8-sig")
    except OSError as exc:
        raise StudyDesignError(f"{path}: cannot read the AI outputs ({exc.strerror or exc})") from exc
    document: Any = None
    if path.suffix.lower() == ".json":
        try:
            document = json.loads(text)
        except json.JSONDecodeError as exc:
            raise StudyDesignError(f"{path}: not valid JSON ({exc})") from exc
    if isinstance(document, dict) and isinstance(document.get("image_results"), list):
        return _from_image_results(path, document, cases, label, key)
    if document is not None:
        data = document
        if isinstance(data, dict):
            data = data.get("predictions", data.get("results", data.get("images", [])))
        if not isinstance(data, list):
            raise StudyDesignError(f"{path}: expected a list of predictions")
        records = _flatten_prediction_records(data)
    else:
        records = list(csv.DictReader(text.splitlines()))
    key_file = _key_path(path, document, key)
    return _from_rows(path, records, cases, label, read_key(key_file) if key_file else {})


def _key_path(results: Path, document: Any, key: str | Path | None) -> Path | None:
    if key is not None:
        return Path(key)
    named = document.get("key_file") if isinstance(document, dict) else None
    if isinstance(named, str) and named:
        candidate = Path(named)
        return candidate if candidate.is_absolute() else results.parent / candidate
    return None


def read_key(path: str | Path) -> dict[str, str]:
    """``image_id -> resolved path`` from the key ``radreview predict --key`` writes."""
    path = Path(path)
    try:
        rows = list(csv.DictReader(path.read_text(encoding="utf-8-sig").splitlines()))
    except OSError as exc:
        raise StudyDesignError(f"{path}: cannot read the key to the image IDs ({exc.strerror or exc})") from exc
    if not rows or not {"image_id", "path"} <= set(rows[0]):
        raise StudyDesignError(f"{path}: not a key written by radreview predict --key (needs image_id, path columns)")
    return {row["image_id"]: str(Path(row["path"]).resolve()) for row in rows if row.get("image_id") and row.get("path")}


def _from_image_results(path: Path, document: dict, cases: list[CaseSpec], label: str | None,
                        key: str | Path | None) -> list[AIOutputSpec]:
    from radreview.inference.serialize import ResultFormatError, image_from_dict

    key_file = _key_path(path, document, key)
    paths = read_key(key_file) if key_file is not None else {}
    if key_file is not None and not paths:
        raise StudyDesignError(f"{key_file}: the key lists no images")
    results: dict[str, Any] = {}
    for index, entry in enumerate(document["image_results"], start=1):
        where = f"{path}, image result {index}"
        if not isinstance(entry, dict):
            raise StudyDesignError(f"{where}: expected an object")
        image_id = str(entry.get("image_id") or "")
        file = entry.get("path") or paths.get(image_id)
        if not file:
            if not paths and key_file is None:
                raise StudyDesignError(f"{path}: the results name images only by pseudonymous IDs "
                                       f"({image_id or 'S00001-I001'}, ...); {KEY_HINT}")
            continue  # an image the key does not list: not one of this study's
        try:
            results[str(Path(file).resolve())] = image_from_dict(entry.get("result"), where)
        except ResultFormatError as exc:
            raise StudyDesignError(str(exc)) from None
    models = [m for m in document.get("models", []) if isinstance(m, dict)]
    source = {"file": path.name, "models": [{k: m.get(k) for k in ("name", "version", "weights_sha256", "file",
                                                                   "calibrated", "scope_check")} for m in models],
              "radreview_version": document.get("radreview_version")}
    return outputs_from_results(cases, results, label, source, where=str(path))


def _from_rows(path: Path, records: list[dict[str, Any]], cases: list[CaseSpec], label: str | None,
               key: dict[str, str]) -> list[AIOutputSpec]:
    """Probability rows (no presentation): the case-level output is the highest row per case and model."""
    by_image = {str(Path(image).resolve()): case.source_id for case in cases for image in case.images}
    by_name = {Path(image).name: case.source_id for case in cases for image in case.images}
    known = {case.source_id for case in cases}
    rows: list[tuple[str, str, str, str, float, str | None]] = []  # case, model, label, task, p, heatmap
    pseudonymous = 0
    for index, record in enumerate(records, start=1):
        where = f"{path}, record {index}"
        if str(record.get("error") or "").strip() or str(record.get("level") or "image") != "image":
            continue
        case_id = str(record.get("case_id") or "").strip()
        if not case_id:
            image = str(record.get("image") or record.get("path") or "").strip()
            if not image and record.get("image_id"):
                image = key.get(str(record["image_id"]), "")
                pseudonymous += not image
            if image:
                case_id = by_image.get(str(Path(image).resolve()), "") or by_name.get(Path(image).name, "")
        if case_id not in known:
            continue  # outputs for images outside the study are ignored
        model = str(record.get("model") or "").strip()
        if not model:
            raise StudyDesignError(f"{where}: no model name")
        try:
            probability = float(record["probability"])
        except (KeyError, TypeError, ValueError) as exc:
            raise StudyDesignError(f"{where}: no valid probability") from exc
        if not 0.0 <= probability <= 1.0:
            raise StudyDesignError(f"{where}: probability {probability} is not between 0 and 1")
        heatmap = str(record.get("heatmap") or record.get("heatmap_path") or "").strip() or None
        rows.append((case_id, model, str(record.get("label") or ""), str(record.get("task") or ""), probability,
                     heatmap))
    if not rows and pseudonymous:
        raise StudyDesignError(f"{path}: the rows name images only by pseudonymous IDs; {KEY_HINT}")
    chosen = _choose_labels({(m, lab): task for _, m, lab, task, _, _ in rows}, label, str(path))
    best: dict[tuple[str, str], AIOutputSpec] = {}
    for case_id, model, record_label, _, probability, heatmap in rows:
        if chosen.get(model) != record_label:
            continue
        key_ = (case_id, model)
        if key_ not in best or probability > best[key_].probability:
            best[key_] = AIOutputSpec(case_id, model, probability, record_label, heatmap)
    return list(best.values())


def _choose_labels(labels: dict[tuple[str, str], str], wanted: str | None, where: str) -> dict[str, str]:
    """model -> the label shown: ``wanted`` (a label or task name), else the model's only finding label.

    Region labels are the first link of the chain, not findings: they never count as a choice.
    """
    by_model: dict[str, dict[str, str]] = {}
    for (model, name), task in labels.items():
        by_model.setdefault(model, {})[name] = task
    chosen: dict[str, str] = {}
    for model, names in by_model.items():
        if wanted is not None:
            hits = [n for n, task in names.items() if wanted in (n, task)]
            if len(hits) == 1:
                chosen[model] = hits[0]
            elif hits:
                raise StudyDesignError(f"{where}: model {model}: {wanted!r} names several labels ({', '.join(hits)})")
            continue
        findings = [n for n, task in names.items() if task != REGION_TASK] or list(names)
        if len(findings) == 1:
            chosen[model] = findings[0]
        else:
            listed = ", ".join(f"{n} ({names[n]})" if names[n] else n for n in sorted(findings)[:6])
            raise StudyDesignError(f"{where}: model {model} answers several labels ({listed}); "
                                   "choose one with --ai-label (a label or task name)")
    if wanted is not None and not chosen:
        offered = ", ".join(sorted({f"{n} ({t})" if t else n for (_, n), t in labels.items()})[:8]) or "none"
        raise StudyDesignError(f"{where}: no model answers the label {wanted!r} (labels: {offered})")
    return chosen


def _flatten_prediction_records(data: list[Any]) -> list[dict[str, Any]]:
    """Accept flat records or ``{"path": ..., "predictions": [{"model", "label", "probability"}]}``."""
    flat: list[dict[str, Any]] = []
    for item in data:
        if not isinstance(item, dict):
            continue
        nested = item.get("predictions") or item.get("outputs")
        if isinstance(nested, list):
            base = {k: v for k, v in item.items() if k not in ("predictions", "outputs")}
            flat.extend({**base, **sub} for sub in nested if isinstance(sub, dict))
        else:
            flat.append(item)
    return flat


# -- whole results -> case outputs -----------------------------------------------------------------
def outputs_from_results(cases: list[CaseSpec], results: dict[str, Any], label: str | None,
                         source: dict[str, Any], where: str = "AI results") -> list[AIOutputSpec]:
    """Case outputs from engine results keyed by resolved image path (``ImageResult``)."""
    from radreview.inference.serialize import image_to_dict, label_to_dict

    wanted_paths = {str(Path(image).resolve()) for case in cases for image in case.images}
    labels = {(r.model, r.label): r.task for path, result in results.items() if path in wanted_paths
              for r in result.labels}
    if not labels:
        raise StudyDesignError(f"{where}: none of the case list's images has an AI result "
                               "(are the images in the case list the files the models ran on?)")
    chosen = _choose_labels(labels, label, where)
    outputs: list[AIOutputSpec] = []
    for case in cases:
        paths = [str(Path(image).resolve()) for image in case.images]
        for model, label_name in sorted(chosen.items()):
            images, answers = [], []
            for position, image_path in enumerate(paths):
                result = results.get(image_path)
                answer = result.get(label_name, model) if result is not None else None
                if answer is None:
                    problem = ("no AI result for this image" if result is None
                               else "the model did not answer for this image (its region)")
                    images.append({"position": position, "result": None, "problem": problem})
                    continue
                answers.append(answer)
                shown = image_to_dict(result, with_cam=False)
                shown["labels"] = [label_to_dict(answer)] + [label_to_dict(r, with_cam=False) for r in result.labels
                                                             if r.task == REGION_TASK]
                images.append({"position": position, "result": shown, "problem": ""})
            if not answers:
                continue
            probability, tier, in_scope = case_answer(answers)
            first = answers[0]
            payload = {"format": STUDY_AI_FORMAT, "model": model, "version": first.version, "label": label_name,
                       "task": first.task, "display_name": first.display_name, "images": images, "source": source}
            outputs.append(AIOutputSpec(case.source_id, model, probability, label_name, None, in_scope, tier, payload))
    return outputs


def case_answer(answers: Sequence[Any]) -> tuple[float, str, bool | None]:
    """(probability, tier, in_scope) of a case from its images' answers for one label."""
    inside = [a for a in answers if a.in_scope is not False]
    counted = inside or list(answers)
    best = max(counted, key=lambda a: a.probability)
    if not inside:
        in_scope: bool | None = False
    elif any(a.in_scope is True for a in inside):
        in_scope = True
    else:
        in_scope = None
    return float(best.probability), best.tier, in_scope


def sham_payload(payload: dict[str, Any]) -> tuple[dict[str, Any], float, str]:
    """The payload readers see on a sham case, with its case-level probability and tier.

    The study label's probability is mirrored on every image (``p -> 1 - p``, so the logit changes
    sign), its tier follows from the same cut-offs, and its local-logit map moves by the same
    change of logit, so the heatmap agrees with the altered answer. Regions are left as they were.
    """
    from radreview.inference.card import OperatingPoints
    from radreview.inference.serialize import image_from_dict, image_to_dict, label_to_dict

    shown_images, answers = [], []
    for item in payload.get("images", []):
        if item.get("result") is None:
            shown_images.append(dict(item))
            continue
        result = image_from_dict(item["result"])
        study, rest = result.labels[0], result.labels[1:]
        study.probability = 1.0 - study.probability
        shift = -2.0 * study.logit
        study.logit = -study.logit
        study.raw_probability = None
        if study.cam is not None and study.cam_units == "logit":
            study.cam = study.cam + shift
        if study.possible is not None and study.likely is not None and not study.tier_note:
            study.tier_in_scope = OperatingPoints(study.possible, study.likely).tier(study.probability)
            study.tier = "out_of_scope" if study.in_scope is False else study.tier_in_scope
        answers.append(study)
        shown = image_to_dict(result, with_cam=False)
        shown["labels"] = [label_to_dict(study)] + [label_to_dict(r, with_cam=False) for r in rest]
        shown_images.append({**item, "result": shown})
    shown_payload = {**payload, "images": shown_images}
    if not answers:
        return shown_payload, 0.0, ""
    probability, tier, _ = case_answer(answers)
    return shown_payload, probability, tier


# -- computed here ---------------------------------------------------------------------------------
def compute_ai_outputs(cases: list[CaseSpec], model_paths: Sequence[str | Path], label: str | None = None,
                       provider: str = "auto", progress: Callable[[int, int], None] | None = None,
                       cancel: Callable[[], bool] | None = None, workers: int = 2) -> tuple[list[AIOutputSpec], list[str]]:
    """Run the models on every case image (the same engine and chain as the viewer and ``predict``).

    Returns the case outputs and the problems (files or models that could not be used, by name).
    """
    from radreview.inference.batch import predict_paths
    from radreview.inference.engine import Engine
    from radreview.inference.registry import discover

    folders = [Path(p) for p in model_paths if Path(p).is_dir()]
    files = [Path(p) for p in model_paths if not Path(p).is_dir()]
    catalog = discover(folders, files) if folders else discover([], files)
    problems = [f"model {p}" for p in catalog.problems]
    engine = Engine(catalog.models, provider=provider, threads=1)
    problems += [f"model {p}" for p in engine.problems]
    if not engine.models:
        raise StudyDesignError("no usable model in " + ", ".join(str(p) for p in model_paths)
                               + (f" ({'; '.join(problems)})" if problems else ""))
    images = sorted({str(Path(image).resolve()) for case in cases for image in case.images})
    batch = predict_paths(images, engine, progress=progress, cancel=cancel, workers=workers)
    if batch.cancelled:
        raise StudyDesignError("computing the AI was cancelled")
    results: dict[str, Any] = {}
    for record in batch.images:
        if record.result is not None:
            results.setdefault(str(Path(record.path).resolve()), record.result)
    problems += [f"{path}: {reason}" for path, reason in batch.problems]
    source = {"file": None, "computed_by": "radreview study create",
              "models": [{"name": m.card.name, "version": m.card.version, "weights_sha256": m.card.weights_sha256,
                          "file": m.file.path.name, "calibrated": m.calibrated, "scope_check": m.scope is not None}
                         for m in engine.models]}
    return outputs_from_results(cases, results, label, source, where="the models"), problems


def model_arguments(values: Iterable[str]) -> tuple[list[str], list[str]]:
    """``--model`` values split into model files/folders to run and model names to show."""
    paths, names = [], []
    for value in values:
        (paths if Path(value).expanduser().exists() or value.endswith(".onnx") else names).append(value)
    return paths, names
