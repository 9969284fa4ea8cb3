"""``radreview export CHECKPOINT --out MODEL.onnx``: a trained checkpoint to a radreview model file."""

from __future__ import annotations

import argparse
import sys


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("checkpoint", help="checkpoint.pt written by radreview train")
    parser.add_argument("--out", required=True, help="the .onnx file to write")
    parser.add_argument("--validation", help="metrics.json from radreview evaluate, for the card's validation figures")


def run(args: argparse.Namespace) -> int:
    try:
        from radreview.training.checkpoint import CheckpointError
        from radreview.training.export import export_checkpoint
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
    return 0
