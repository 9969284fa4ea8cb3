"""``radreview quantize MODEL.onnx DATA --split-file SPLIT --out MODEL_int8.onnx``: an int8 copy that answers the same.

Static int8 quantisation (ONNX Runtime's QDQ tools), calibrated on the model's own training split,
then the parity gate on its validation split: every label's AUC within 0.005 of float32 and the
same tiers for at least 99% of the images, or the command refuses with the figures. Needs no torch.
"""

from __future__ import annotations

import argparse
import sys


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from radreview.training.quantize import DEFAULT_CALIBRATION_IMAGES

    parser.add_argument("model", help="float32 radreview .onnx model file")
    parser.add_argument("data", help="the labelled dataset it was trained on (as radreview train reads it)")
    parser.add_argument("--split-file", required=True, help="split.csv of the training run")
    parser.add_argument("--out", required=True, help="the int8 .onnx file to write (not MODEL itself)")
    add_quantize_options(parser, DEFAULT_CALIBRATION_IMAGES)


def add_quantize_options(parser: argparse.ArgumentParser, default_images: int) -> None:
    """Options shared with ``radreview export --int8``."""
    parser.add_argument("--calibration-images", type=int, default=default_images,
                        help=f"training images that set the activation ranges (default {default_images})")
    parser.add_argument("--calibration-method", default="minmax", choices=("minmax", "percentile", "entropy"),
                        help="how the activation ranges are set from them (default minmax)")
    parser.add_argument("--stem-convs", type=int, default=3,
                        help="convolutions from the input kept float (default 3: EfficientNet-Lite0's stem and first "
                             "block, which quantise worst)")
    parser.add_argument("--refit", default="auto", choices=("auto", "always", "never"),
                        help="refit scope check, calibration and operating points on the int8 outputs: auto "
                             "(when the float32 scope statistics do not hold for the int8 features), always, never")
    parser.add_argument("--auc-tolerance", type=float, default=0.005,
                        help="parity gate: largest AUC loss against float32 for any label (default 0.005)")
    parser.add_argument("--tier-agreement", type=float, default=0.99,
                        help="parity gate: smallest share of validation images with the same tiers (default 0.99); "
                             "the card records the gate that was passed")
    parser.add_argument("--cache-dir", help="folder for decoded pixels (reused by later runs)")
    parser.add_argument("--fracatlas-tasks", default="region,fracture,hardware")


def run(args: argparse.Namespace) -> int:
    from radreview.training.progress import TqdmProgress

    progress = TqdmProgress("quantize")
    try:
        return quantize_and_report(args.model, args.data, args.split_file, args.out, args, progress, "quantize")
    finally:
        progress.close()


def quantize_and_report(model, data, split_file, out, args: argparse.Namespace, progress, command: str) -> int:
    """Run :func:`radreview.training.quantize.quantize_model_file` and print the parity figures."""
    from radreview.inference.card import ModelCardError
    from radreview.training.datasets import DatasetError
    from radreview.training.image_cache import Cancelled
    from radreview.training.quantize import Gate, ParityError, QuantizationError, quantize_model_file

    try:
        card, report = quantize_model_file(
            model, data, split_file, out, calibration_images=args.calibration_images,
            cache_dir=args.cache_dir, method=args.calibration_method, refit=args.refit, progress=progress,
            gate=Gate(args.auc_tolerance, args.tier_agreement), stem_convs=args.stem_convs,
            fracatlas_tasks=tuple(args.fracatlas_tasks.split(",")))
    except ParityError as exc:
        progress.close()
        print(f"radreview {command}: {exc}", file=sys.stderr)
        return 3
    except (QuantizationError, DatasetError, ModelCardError, Cancelled, OSError, ValueError) as exc:
        progress.close()
        print(f"radreview {command}: {exc}", file=sys.stderr)
        return 2
    progress.close()
    calibration = card.quantization["calibration_set"]
    print(f"wrote {out}: {card.name} {card.version} (int8; calibrated on {calibration['count']} "
          f"{calibration['split']}-split images; refitted on int8 outputs: "
          f"{'yes' if card.quantization.get('refitted_on_int8') else 'no'})")
    for line in report["parity"].lines():
        print(f"  {line}")
    return 0
