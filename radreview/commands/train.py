"""``radreview train DATA --out DIR``: transfer learning from a labelled dataset (needs [train])."""

from __future__ import annotations

import argparse
import logging
import shlex
import sys

log = logging.getLogger(__name__)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.set_defaults(_train_parser=parser)  # to write the command line into the card
    parser.add_argument("data", help="folder-per-class tree, CSV (path,label[s]), MURA-style study tree or FracAtlas folder")
    parser.add_argument("--out", required=True, help="run folder: split.csv, training log, checkpoint.pt")
    parser.add_argument("--name", default="classifier", help="model name for the card")
    parser.add_argument("--version", default="1.0.0", dest="model_version")
    data = parser.add_argument_group("dataset")
    data.add_argument("--task", default="abnormality", help="task name of the labels (abnormality, dislocation, fracture...)")
    data.add_argument("--kind", choices=["binary", "one-vs-rest", "multiclass", "multilabel"], help="default: from the data")
    data.add_argument("--positive", help="positive class of a two-class dataset")
    data.add_argument("--label-columns", help="CSV: comma-separated 0/1 label columns (default: all but path/group)")
    data.add_argument("--path-column", default="path")
    data.add_argument("--group-column", help="CSV: patient or study column (kept in one split)")
    data.add_argument("--image-root", help="CSV: folder the paths are relative to (default: the CSV's)")
    data.add_argument("--fracatlas-tasks", default="region,fracture,hardware", help="FracAtlas: which tasks")
    data.add_argument("--split-file", help="reuse or write this split CSV (default: OUT/split.csv)")
    data.add_argument("--split", default="0.7,0.1,0.2", help="train,val,test fractions")
    data.add_argument("--max-images", type=int, help="use only the first N images (quick trials)")
    model = parser.add_argument_group("model")
    model.add_argument("--backbone", default="efficientnet_lite0",
                       choices=["efficientnet_lite0", "resnet18", "resnet50", "densenet121", "densenet161", "inception_v3"])
    model.add_argument("--weights", help="ImageNet weights file (state_dict) for a torchvision backbone")
    model.add_argument("--from-scratch", action="store_true", help="no ImageNet weights (not recommended)")
    model.add_argument("--image-size", type=int, default=256, help="input height = width (letterboxed)")
    model.add_argument("--trainable-stages", type=int, help="fine-tune only the top N backbone stages")
    model.add_argument("--freeze-backbone", action="store_true", help="train only the top (linear) layer")
    model.add_argument("--cache-lower", action="store_true",
                       help="compute the frozen stages once (with --trainable-stages): fast on the CPU")
    opt = parser.add_argument_group("optimisation")
    opt.add_argument("--epochs", type=int, default=10)
    opt.add_argument("--batch-size", type=int, default=32)
    opt.add_argument("--lr", type=float, default=5e-4)
    opt.add_argument("--patience", type=int, default=3, help="early stopping on validation macro-AUC")
    opt.add_argument("--balance", choices=["pos_weight", "sampler", "none"], default="pos_weight")
    opt.add_argument("--static-augment", type=int, default=1, help="Nx augmentation: each image N times per epoch")
    opt.add_argument("--augment", choices=["robust", "standard", "none"], default="robust",
                     help="robust (default: orientation, crop/zoom, contrast/gamma/inversion, sharpening, blur, "
                          "low resolution, noise, JPEG; for images from other hospitals), standard (milder) or none")
    opt.add_argument("--no-augment", action="store_true", help="the same as --augment none")
    flips = opt.add_mutually_exclusive_group()
    flips.add_argument("--flip", action="store_true", help="allow horizontal flips with --augment standard")
    flips.add_argument("--no-flip", action="store_true",
                       help="no flips or 90-degree turns (tasks whose labels depend on laterality)")
    opt.add_argument("--seed", type=int, default=0)
    opt.add_argument("--device", default="auto", help="auto (CUDA when present), cpu, cuda")


def config_from_args(args: argparse.Namespace):
    from radreview.training.augment import preset
    from radreview.training.train import TrainConfig

    name = "none" if args.no_augment else args.augment
    allow_flip = not args.no_flip and (args.flip or name == "robust")
    augment = preset(name, allow_flip)
    fractions = tuple(float(v) for v in args.split.split(","))
    return TrainConfig(
        data=args.data, out_dir=args.out, name=args.name, version=args.model_version, task=args.task,
        kind=args.kind, positive=args.positive,
        label_columns=args.label_columns.split(",") if args.label_columns else None,
        group_column=args.group_column, path_column=args.path_column, image_root=args.image_root,
        fracatlas_tasks=tuple(args.fracatlas_tasks.split(",")), split_file=args.split_file,
        split_fractions=fractions, max_images=args.max_images,  # type: ignore[arg-type]
        backbone=args.backbone, weights=args.weights, from_scratch=args.from_scratch,
        image_size=args.image_size, trainable_stages=0 if args.freeze_backbone else args.trainable_stages,
        cache_lower=args.cache_lower, epochs=args.epochs, batch_size=args.batch_size, lr=args.lr,
        patience=args.patience, balance=args.balance, static_augment=args.static_augment, augment=augment,
        seed=args.seed, device=args.device, command=command_line(args),
    )


def command_line(args: argparse.Namespace) -> str:
    """The equivalent ``radreview train`` command (what the user typed, defaults left out)."""
    parser = getattr(args, "_train_parser", None)
    words = ["radreview", "train", args.data]
    for action in parser._actions if parser else []:  # argparse has no public list of actions
        if not action.option_strings or action.dest in ("help", "data"):
            continue
        value = getattr(args, action.dest, None)
        if value == action.default or value is None:
            continue
        option = max(action.option_strings, key=len)
        words += [option] if action.nargs == 0 else [option, str(value)]
    return shlex.join(words)


def run(args: argparse.Namespace) -> int:
    try:
        from radreview.training.train import train_classifier
    except ImportError as exc:
        print(f"radreview train needs the [train] extra (torch): {exc}", file=sys.stderr)
        return 2
    from radreview.training.backbones import BackboneError
    from radreview.training.datasets import DatasetError
    from radreview.training.progress import TqdmProgress

    progress = TqdmProgress("train")
    try:
        result = train_classifier(config_from_args(args), progress)
    except (DatasetError, BackboneError, ValueError) as exc:
        print(f"radreview train: {exc}", file=sys.stderr)
        return 2
    finally:
        progress.close()
    aucs = ", ".join(f"{k} {v:.3f}" for k, v in result.val_auc.items())
    print(f"best epoch {result.best_epoch}; validation AUC: {aucs}")
    print(f"checkpoint: {result.checkpoint}  (next: radreview export {result.checkpoint} --out MODEL.onnx)")
    return 0
