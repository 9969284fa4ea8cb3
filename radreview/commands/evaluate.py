"""``radreview evaluate MODEL DATA --out DIR``: ROC, AUC with DeLong CI, operating points, calibration, CAMs.

MODEL is an exported ``.onnx`` file (run with onnxruntime) or a ``checkpoint.pt`` (needs the
[train] extra; CAM examples then use Grad-CAM). DATA is any dataset ``radreview train`` reads.
"""

from __future__ import annotations

import argparse
import logging
import sys

log = logging.getLogger(__name__)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("model", help="model file (.onnx) or checkpoint.pt")
    parser.add_argument("data", help="labelled dataset: folder tree, CSV, MURA-style tree or FracAtlas folder")
    parser.add_argument("--out", required=True, help="folder for metrics.json, ROC and calibration plots, CAM examples")
    parser.add_argument("--split", default="test", choices=["test", "val", "train", "all"],
                        help="which images: a split of the training run (needs its split file) or all (external test set)")
    parser.add_argument("--split-file", help="split.csv of the training run (default: the checkpoint's)")
    parser.add_argument("--cam-examples", type=int, default=4, help="CAM overlays per label (0: none)")
    parser.add_argument("--provider", default="cpu", help="onnxruntime provider for an .onnx model (auto, cpu, cuda...)")
    data = parser.add_argument_group("dataset (as radreview train)")
    data.add_argument("--task", default="abnormality")
    data.add_argument("--positive", help="positive class of a two-class dataset")
    data.add_argument("--label-columns", help="CSV: comma-separated 0/1 label columns")
    data.add_argument("--path-column", default="path")
    data.add_argument("--group-column")
    data.add_argument("--image-root")
    data.add_argument("--fracatlas-tasks", default="region,fracture,hardware")


def run(args: argparse.Namespace) -> int:
    from radreview.inference.card import ModelCardError
    from radreview.training.datasets import DatasetError
    from radreview.training.evaluate import EvaluationError, evaluate_model, format_summary
    from radreview.training.progress import TqdmProgress

    progress = TqdmProgress("evaluate")
    options = {
        "task": args.task, "positive": args.positive,
        "label_columns": args.label_columns.split(",") if args.label_columns else None,
        "group_column": args.group_column, "path_column": args.path_column, "image_root": args.image_root,
        "fracatlas_tasks": tuple(args.fracatlas_tasks.split(",")),
    }
    try:
        result = evaluate_model(args.model, args.data, args.out, args.split, args.split_file, args.cam_examples,
                                args.provider, progress, **options)
    except ImportError as exc:
        print(f"radreview evaluate: {exc} (a checkpoint needs the [train] extra)", file=sys.stderr)
        return 2
    except (EvaluationError, DatasetError, ModelCardError, ValueError, OSError) as exc:  # CheckpointError too
        print(f"radreview evaluate: {exc}", file=sys.stderr)
        return 2
    finally:
        progress.close()
    print(format_summary(result))
    print(f"figures in {args.out} (metrics.json, roc.png, reliability.png, cam/)")
    return 0
