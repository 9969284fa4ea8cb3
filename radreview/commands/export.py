"""``radreview export CHECKPOINT --out MODEL.onnx [--int8]``: a trained checkpoint to a radreview model file.

With ``--int8`` it writes ``MODEL_int8.onnx`` too: static int8, calibrated on the run's training
split and checked against float32 on its validation split (as ``radreview quantize`` does).
"""

from __future__ import annotations

import argparse
import sys


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("checkpoint", help="checkpoint.pt written by radreview train")
    parser.add_argument("--out", required=True, help="the .onnx file to write")
    parser.add_argument("--validation", help="metrics.json from radreview evaluate, for the card's validation figures")
    int8 = parser.add_argument_group("int8 (--int8)")
    int8.add_argument("--int8", action="store_true",
                      help="also write OUT_int8.onnx (static int8; refused with the figures if it does not "
                           "answer like float32 on the validation split)")
    int8.add_argument("--data", help="the training data (default: the path the checkpoint records)")
    int8.add_argument("--split-file", help="the run's split.csv (default: the one the checkpoint records)")
    from radreview.commands.quantize import add_quantize_options
    from radreview.training.quantize import DEFAULT_CALIBRATION_IMAGES

    add_quantize_options(int8, DEFAULT_CALIBRATION_IMAGES)


def run(args: argparse.Namespace) -> int:
    try:
        from radreview.training.checkpoint import CheckpointError
        from radreview.training.export import export_checkpoint, int8_path
    except ImportError as exc:
        print(f"radreview export needs the [train] extra (torch): {exc}", file=sys.stderr)
        return 2
    from radreview.inference.card import ModelCardError

    try:
        card = export_checkpoint(args.checkpoint, args.out, args.validation)
    except (CheckpointError, ModelCardError, OSError, ValueError) as exc:
        print(f"radreview export: {exc}", file=sys.stderr)
        return 2
    labels = ", ".join(f"{label.name} ({label.task})" for label in card.labels)
    print(f"wrote {args.out}: {card.name} {card.version}, labels {labels}")
    if not args.int8:
        return 0
    return _int8(args, int8_path(args.out), CheckpointError)


def _int8(args: argparse.Namespace, out, checkpoint_error) -> int:
    from radreview.commands.quantize import quantize_and_report
    from radreview.training.checkpoint import read_checkpoint
    from radreview.training.export import training_dataset
    from radreview.training.progress import TqdmProgress

    try:
        meta = read_checkpoint(args.checkpoint)["meta"]
        dataset = training_dataset(meta, args.data)
    except (checkpoint_error, OSError, ValueError) as exc:
        print(f"radreview export: cannot read the training data for --int8: {exc}", file=sys.stderr)
        return 2
    split = args.split_file or meta.get("training_data", {}).get("split_file", "")
    progress = TqdmProgress("int8")
    try:
        return quantize_and_report(args.out, dataset, split, out, args, progress, "export --int8")
    finally:
        progress.close()
