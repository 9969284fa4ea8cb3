"""``radreview predict PATH... --out results.csv|.json``: run the classifiers over files, folders, DICOMDIRs."""

from __future__ import annotations

import argparse
import os
import sys

from radreview import RESEARCH_USE_NOTICE


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from radreview.inference.cam import COLOR_MAPS
    from radreview.inference.heatmap_files import CAM_FORMATS
    from radreview.inference.registry import PRECISION_CHOICES
    from radreview.inference.sessions import PROVIDER_CHOICES

    parser.add_argument("paths", nargs="+", metavar="PATH", help="files, folders or DICOMDIRs")
    parser.add_argument("--out", required=True, help="results file: .csv (one row per image/study and label) or .json")
    parser.add_argument("--cam-dir", help="write heatmap overlays (PNG) here, one per image and label at or above "
                                          "its --cam-gate operating point")
    parser.add_argument("--cam-gate", default="likely", choices=("likely", "possible", "0.5"),
                        help="operating point that gates the heatmaps (default likely: high specificity)")
    parser.add_argument("--cam-all", action="store_true", help="with --cam-dir: write every label's overlay")
    parser.add_argument("--cam-format", default="png", choices=CAM_FORMATS,
                        help="heatmap files: png (lossless, default) or jpeg (several times faster to write)")
    parser.add_argument("--colormap", default="jet", choices=COLOR_MAPS, help="heatmap colour map (default jet)")
    parser.add_argument("--cam-scale", default="absolute", choices=("absolute", "minmax"),
                        help="absolute logit scale shared by all images (default) or per-image min-max")
    parser.add_argument("--cam-span", type=float, default=24.0,
                        help="absolute scale: local logits above the gate that the colour map covers (default 24)")
    parser.add_argument("--models", action="append", metavar="DIR",
                        help="models folder or .onnx file (repeatable; replaces the default folders)")
    parser.add_argument("--provider", default="auto", choices=PROVIDER_CHOICES, help="execution provider (default auto)")
    parser.add_argument("--precision", default="auto", choices=PRECISION_CHOICES,
                        help="which file of a model shipped in two precisions: auto (int8 where there is one, "
                             "made from the float32 file), int8 or float32 (to check the difference)")
    parser.add_argument("--batch-size", type=int, default=0,
                        help="images per inference batch (default: 1 on the CPU, 16 on an accelerator; "
                             "measured in docs/performance.md)")
    parser.add_argument("--threads", type=int, default=1,
                        help="onnxruntime threads per model (default 1: the workers run side by side)")
    parser.add_argument("--workers", type=int, default=0,
                        help="worker threads, each decoding and predicting its own images (default: cores, at most 8)")
    parser.add_argument("--identifiers", action="store_true",
                        help="include patient IDs, UIDs and paths in the results (default: pseudonymous IDs only)")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")


def run(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from radreview.inference.batch import predict_paths
    from radreview.inference.cam import CamDisplay
    from radreview.inference.engine import Engine
    from radreview.inference.registry import discover
    from radreview.inference.results_io import write_results

    if not args.out.lower().endswith((".csv", ".json")):
        print(f"radreview predict: --out {args.out}: results must be .csv or .json", file=sys.stderr)
        return 2
    catalog = discover(args.models, precision=args.precision)
    for problem in catalog.problems:
        print(f"radreview predict: skipping model {problem}", file=sys.stderr)
    for note in catalog.notes:
        print(f"radreview predict: {note}", file=sys.stderr)
    engine = Engine(catalog.models, provider=args.provider, threads=args.threads or None,
                    batch_size=args.batch_size or None)
    for problem in engine.problems:
        print(f"radreview predict: skipping model {problem}", file=sys.stderr)
    for note in engine.provider_notes:
        print(f"radreview predict: {note}", file=sys.stderr)
    if not engine.models:
        where = ", ".join(str(p) for p in catalog.searched) or "(none)"
        print(f"radreview predict: no usable model found (searched {where}); use --models DIR", file=sys.stderr)
        return 2
    models = ", ".join(f"{m.card.name} {m.card.version} ({m.card.precision})" for m in engine.models)
    print(f"{RESEARCH_USE_NOTICE}\nmodels: {models}; provider: {engine.provider}", file=sys.stderr)

    bar = tqdm(total=0, unit="img", disable=args.quiet, file=sys.stderr, desc="predict")

    def progress(done: int, total: int) -> None:
        bar.total = total
        bar.n = done
        bar.refresh()

    workers = args.workers or min(8, os.cpu_count() or 1)
    try:
        result = predict_paths(
            args.paths, engine, progress=progress, cam_dir=args.cam_dir,
            cam_display=CamDisplay(mode=args.cam_scale, span_logits=args.cam_span), colormap=args.colormap,
            cam_all_labels=args.cam_all, workers=workers, cam_gate=args.cam_gate, cam_format=args.cam_format,
        )
    finally:
        bar.close()
    for path, reason in result.problems:
        print(f"radreview predict: skipped {path}: {reason}", file=sys.stderr)
    try:
        write_results(args.out, result, engine, args.identifiers)
    except OSError as exc:
        print(f"radreview predict: cannot write {args.out}: {exc}", file=sys.stderr)
        return 2
    done = sum(1 for r in result.images if r.result is not None)
    rate = done / result.wall_seconds if result.wall_seconds else 0.0
    print(f"wrote {args.out}: {done} images in {len({s.study for s in result.studies})} studies, "
          f"{len(result.problems)} skipped, {rate:.1f} images/s"
          + (f", {len(result.cam_files)} heatmaps in {args.cam_dir}" if args.cam_dir else ""), file=sys.stderr)
    return 0 if done or not result.problems else 1
