"""``radreview predict PATH... --out results.csv|.json``: run the classifiers over files, folders, DICOMDIRs."""

from __future__ import annotations

import argparse
import os
import sys
from collections import Counter
from pathlib import Path

from radreview import RESEARCH_USE_NOTICE


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from radreview.inference.cam import COLOR_MAPS
    from radreview.inference.heatmap_files import CAM_FORMATS
    from radreview.inference.registry import PRECISION_CHOICES
    from radreview.inference.sessions import PROVIDER_CHOICES

    parser.add_argument("paths", nargs="+", metavar="PATH", help="files, folders or DICOMDIRs")
    parser.add_argument("--out", required=True, help="results file: .csv (one row per image/study and label) or .json (the rows, plus every "
                             "image's whole result with its heatmaps: what a reader study needs)")
    parser.add_argument("--cam-dir", help="write heatmap overlays (PNG) here, one per image and finding whose "
                                          "heatmap the viewer draws (at or above its --cam-gate operating point)")
    parser.add_argument("--cam-gate", default="likely", choices=("likely", "possible", "0.5"),
                        help="operating point that gates the heatmaps (default likely: high specificity)")
    parser.add_argument("--cam-all", action="store_true",
                        help="with --cam-dir: write every label's overlay (the region labels' too, and those the "
                             "viewer would not draw)")
    parser.add_argument("--cam-format", default="png", choices=CAM_FORMATS,
                        help="heatmap files: png (lossless, default) or jpeg (a sixth of the size, about as fast to write)")
    parser.add_argument("--colormap", default="jet", choices=COLOR_MAPS, help="heatmap colour map (default jet)")
    parser.add_argument("--cam-scale", default="absolute", choices=("absolute", "minmax"),
                        help="absolute logit scale shared by all images (default) or per-image min-max")
    parser.add_argument("--cam-span", type=float, default=None,
                        help="absolute scale: local logits above the gate that the colour map covers (default: each "
                             "label's span from its model card, as the viewer shows it, else 24)")
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
    parser.add_argument("--sr-dir", metavar="DIR",
                        help="also write the results as DICOM: one Comprehensive SR (TID 1500) per study, referencing "
                             "its images and carrying their patient/study modules (DICOM inputs only)")
    parser.add_argument("--sr-heatmaps", action="store_true",
                        help="with --sr-dir: a secondary capture per heatmap at or above --cam-gate, notice burned in")
    parser.add_argument("--send", metavar="NODE",
                        help="with --sr-dir: C-STORE the SRs (and captures) to the saved PACS node NODE")
    parser.add_argument("--key", metavar="FILE",
                        help="also write the key from the pseudonymous image IDs to the files (CSV with paths: "
                             "keep it with identifiable data). A reader study made from the results needs it "
                             "to find each case's images; the JSON results name it")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")


def run(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from radreview.csv_safety import path_text
    from radreview.inference.batch import predict_paths
    from radreview.inference.engine import Engine
    from radreview.inference.registry import discover
    from radreview.inference.results_io import ResultsWriter, write_key

    if not args.out.lower().endswith((".csv", ".json")):
        print(f"radreview predict: --out {args.out}: results must be .csv or .json", file=sys.stderr)
        return 2
    if (args.sr_heatmaps or args.send) and not args.sr_dir:
        print("radreview predict: --sr-heatmaps and --send need --sr-dir DIR", file=sys.stderr)
        return 2
    node = None
    if args.send:
        from radreview.pacs import load_pacs_settings

        settings = load_pacs_settings()
        try:
            node = settings.node(args.send)
        except KeyError as exc:
            print(f"radreview predict: --send: {exc.args[0]}", file=sys.stderr)
            return 2
    if args.key and Path(args.key).resolve() == Path(args.out).resolve():
        print(f"radreview predict: --key {args.key} would overwrite the results; choose another file", file=sys.stderr)
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
    if args.cam_dir:
        try:
            Path(args.cam_dir).mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            bar.close()
            print(f"radreview predict: cannot write heatmaps to {args.cam_dir}: {exc.strerror or exc}", file=sys.stderr)
            return 2
    try:
        # Rows go to OUT.partial as each image is done; OUT appears, complete, at the end.
        writer = ResultsWriter(args.out, engine, args.identifiers, key_file=args.key)
    except OSError as exc:
        bar.close()
        print(f"radreview predict: cannot write {args.out}: {exc.strerror or exc}", file=sys.stderr)
        return 2
    try:
        result = predict_paths(
            args.paths, engine, progress=progress, cam_dir=args.cam_dir,
            cam_style=overlay_style(args), cam_all_labels=args.cam_all, workers=workers, on_record=writer.add,
            cam_format=args.cam_format,
        )
        writer.finish(result)
    except OSError as exc:
        print(f"radreview predict: cannot write results: {exc}; the images done so far are in {writer.partial}",
              file=sys.stderr)
        return 2
    finally:
        writer.close()
        bar.close()
    for path, reason in result.problems:
        print(f"radreview predict: skipped {path_text(path)}: {reason}", file=sys.stderr)
    for reason, count in Counter(reason for _, reason in result.notes).items():
        print(f"radreview predict: {reason} ({count} image{'s' if count != 1 else ''})", file=sys.stderr)
    if args.key:
        try:
            write_key(args.key, result)
        except OSError as exc:
            print(f"radreview predict: cannot write the key {args.key}: {exc}", file=sys.stderr)
            return 2
    if args.sr_dir:
        status = _write_dicom_results(args, result, node)
        if status:
            return status
    done = sum(1 for r in result.images if r.result is not None)
    rate = done / result.wall_seconds if result.wall_seconds else 0.0
    print(f"wrote {args.out}: {done} images in {len({s.study for s in result.studies})} studies, "
          f"{len(result.problems)} skipped, {rate:.1f} images/s"
          + (f", {len(result.cam_files)} heatmaps in {args.cam_dir}" if args.cam_dir else "")
          + (f"; key to the files in {args.key}" if args.key else ""), file=sys.stderr)
    return 0 if done or not result.problems else 1


def overlay_style(args: argparse.Namespace):
    """The heatmap options of the command line, for the files and the DICOM captures alike."""
    from radreview.inference.batch import OverlayStyle

    span = args.cam_span if args.cam_span is not None and args.cam_span > 0 else None
    return OverlayStyle(scale=args.cam_scale, span=span, gate=args.cam_gate, colormap=args.colormap)


def _write_dicom_results(args: argparse.Namespace, result, node) -> int:
    """The SRs (and captures) of --sr-dir, then --send; 0, or 2 when nothing could be written."""
    from radreview.pacs import PacsError, load_pacs_settings
    from radreview.pacs.ai_results import write_study_reports

    try:
        reports = write_study_reports(result, args.sr_dir, heatmaps=args.sr_heatmaps,
                                      style=overlay_style(args))
    except OSError as exc:
        print(f"radreview predict: cannot write into --sr-dir {args.sr_dir}: {exc.strerror or exc}", file=sys.stderr)
        return 2
    for problem in reports.problems:
        print(f"radreview predict: {problem}", file=sys.stderr)
    print(f"wrote {len(reports.files)} DICOM object(s) into {args.sr_dir} (they carry patient data)", file=sys.stderr)
    if node is None or not reports.files:
        return 0
    from radreview.pacs.send import send

    try:
        sent = send(node, reports.files, calling_aet=load_pacs_settings().local.ae_title)
    except PacsError as exc:
        print(f"radreview predict: --send: {exc}", file=sys.stderr)
        return 1
    for what, why in sent.failed:
        print(f"radreview predict: --send: {Path(what).name}: {why}", file=sys.stderr)
    print(f"sent {len(sent.sent)} of {len(reports.files)} to {node.label}", file=sys.stderr)
    return 0 if not sent.failed else 1
