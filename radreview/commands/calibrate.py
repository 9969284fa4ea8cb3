"""``radreview calibrate MODEL.onnx DATA --split-file SPLIT --out OUT.onnx``: scope check, calibration, operating points.

Fits, on the model's own training data (the run's split file), the scope check (training split
features; threshold at a percentile of the validation split), per-label calibration and the
operating points on calibrated validation probabilities, and writes them into the card of a copy
of the model. Needs no torch.
"""

from __future__ import annotations

import argparse
import sys


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("model", help="radreview .onnx model file")
    parser.add_argument("data", nargs="?", help="the labelled dataset it was trained on (as radreview train reads it)")
    parser.add_argument("--split-file", help="split.csv of the training run (required unless --figures-only)")
    parser.add_argument("--out", required=True, help="the .onnx file to write (may be MODEL itself)")
    parser.add_argument("--method", default="auto", choices=("auto", "platt", "temperature"),
                        help="per-label calibration (default auto: temperature or Platt, whichever fits the "
                             "validation split better, none when neither helps)")
    parser.add_argument("--percentile", type=float, default=99.0,
                        help="scope threshold: this percentile of the validation split's distances (default 99)")
    parser.add_argument("--validation", help="metrics.json of radreview evaluate on the test split (card figures)")
    parser.add_argument("--external", action="append", default=[], metavar="METRICS",
                        help="metrics.json of radreview evaluate on an external set (repeatable)")
    parser.add_argument("--version", dest="model_version", help="the calibrated model's version (default: unchanged)")
    parser.add_argument("--figures-only", action="store_true",
                        help="only write --validation/--external figures into an already calibrated model's card")
    parser.add_argument("--report", help="write what was fitted (calibration before/after, cut-offs, scope) as JSON")
    parser.add_argument("--cache-dir", help="folder for decoded pixels (reused by later runs)")
    parser.add_argument("--fracatlas-tasks", default="region,fracture,hardware")


def run(args: argparse.Namespace) -> int:
    from radreview.inference.card import ModelCardError
    from radreview.training.calibrate import CalibrationError, calibrate_model_file
    from radreview.training.datasets import DatasetError
    from radreview.training.progress import TqdmProgress

    if not args.figures_only and (not args.data or not args.split_file):
        print("radreview calibrate: DATA and --split-file are needed (or --figures-only)", file=sys.stderr)
        return 2
    if args.figures_only:
        from radreview.training.calibrate import embed_figures

        try:
            card = embed_figures(args.model, args.out, args.validation, args.external, args.model_version)
        except (CalibrationError, ModelCardError, OSError, ValueError) as exc:
            print(f"radreview calibrate: {exc}", file=sys.stderr)
            return 2
        print(f"wrote {args.out}: {card.name} {card.version} with {len(args.external)} external set(s)")
        return 0
    progress = TqdmProgress("calibrate")
    try:
        card, report = calibrate_model_file(
            args.model, args.data, args.split_file, args.out, args.method, args.percentile, args.cache_dir,
            args.validation, args.external, args.model_version, progress, fracatlas_tasks=tuple(args.fracatlas_tasks.split(",")))
    except (CalibrationError, DatasetError, ModelCardError, OSError, ValueError) as exc:
        print(f"radreview calibrate: {exc}", file=sys.stderr)
        return 2
    finally:
        progress.close()
    if args.report:
        import json
        from pathlib import Path

        Path(args.report).write_text(json.dumps(report, indent=1, default=float))
    scope = report["scope"]
    print(f"wrote {args.out}: {card.name} {card.version}")
    for check in scope["checks"]:
        print(f"  scope check on {check['output']}: threshold {check['threshold']:.3f} ({check['percentile']:g}th "
              f"percentile of {scope['n_threshold']} validation images; fitted on {scope['n_fit']} training images)")
    print(f"  scope check: {100 * scope['validation_rejected']:.1f}% of validation images out of scope")
    for name, figures in report["calibration"].items():
        extra = (f"ECE {figures['ece_before']:.3f} -> {figures['ece_after']:.3f}" if "ece_before" in figures
                 else f"T = {figures.get('temperature', 1):.3f}")
        print(f"  {name:<12} {figures['method']}: {extra}")
    for name, ops in report["operating_points"].items():
        flag = "" if ops["reliable"] else (f"  (too few cases: {ops.get('n_pos')} positive and {ops.get('n_neg')} "
                                           "negative validation images; no tier shown)")
        print(f"  {name:<12} possible >= {ops['possible']:.3g}, likely >= {ops['likely']:.3g}{flag}")
    return 0
