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
    parser.add_argument("data", help="the labelled dataset it was trained on (as radreview train reads it)")
    parser.add_argument("--split-file", required=True, help="split.csv of the training run")
    parser.add_argument("--out", required=True, help="the .onnx file to write (may be MODEL itself)")
    parser.add_argument("--method", default="platt", choices=("platt", "temperature"),
                        help="per-label calibration (default platt: also corrects the base rate)")
    parser.add_argument("--percentile", type=float, default=99.0,
                        help="scope threshold: this percentile of the validation split's distances (default 99)")
    parser.add_argument("--validation", help="metrics.json of radreview evaluate on the test split (card figures)")
    parser.add_argument("--external", action="append", default=[], metavar="METRICS",
                        help="metrics.json of radreview evaluate on an external set (repeatable)")
    parser.add_argument("--cache-dir", help="folder for decoded pixels (reused by later runs)")
    parser.add_argument("--fracatlas-tasks", default="region,fracture,hardware")


def run(args: argparse.Namespace) -> int:
    from radreview.inference.card import ModelCardError
    from radreview.training.calibrate import CalibrationError, calibrate_model_file
    from radreview.training.datasets import DatasetError
    from radreview.training.progress import TqdmProgress

    progress = TqdmProgress("calibrate")
    try:
        card, report = calibrate_model_file(
            args.model, args.data, args.split_file, args.out, args.method, args.percentile, args.cache_dir,
            args.validation, args.external, progress, fracatlas_tasks=tuple(args.fracatlas_tasks.split(",")))
    except (CalibrationError, DatasetError, ModelCardError, OSError, ValueError) as exc:
        print(f"radreview calibrate: {exc}", file=sys.stderr)
        return 2
    finally:
        progress.close()
    scope = report["scope"]
    print(f"wrote {args.out}: {card.name} {card.version}")
    print(f"  scope check: threshold {scope['threshold']:.3f} ({scope['percentile']:g}th percentile of "
          f"{scope['n_threshold']} validation images; fitted on {scope['n_fit']} training images)")
    for name, figures in report["calibration"].items():
        extra = (f"ECE {figures['ece_before']:.3f} -> {figures['ece_after']:.3f}" if "ece_before" in figures
                 else f"T = {figures.get('temperature', 1):.3f}")
        print(f"  {name:<12} {figures['method']}: {extra}")
    for name, ops in report["operating_points"].items():
        flag = "" if ops["reliable"] else f"  (too few cases: {ops['n_pos']} positive; no tier shown)"
        print(f"  {name:<12} possible >= {ops['possible']:.3g}, likely >= {ops['likely']:.3g}{flag}")
    return 0
