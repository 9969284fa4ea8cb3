"""Benchmark: ``radreview train`` + ``export`` + ``evaluate`` on a new 150-image, two-class dataset.

The issue asks that a site's small dataset (about 150 images, two classes) trains and evaluates
end to end on the CPU in under 15 minutes. The stand-in is real: FracAtlas radiographs with
orthopaedic hardware (75) against radiographs without (75), as a folder-per-class tree in a
temporary folder. The baseline, measured in the same run, is reading and letterboxing the 150
images once; the figures are printed as seconds and as multiples of it.

    .venv/bin/python tests/benchmarks/bench_training.py [--keep DIR]
"""

from __future__ import annotations

import argparse
import csv
import sys
import tempfile
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
FRACATLAS_DIR = REPO_ROOT.parent / "shared" / "data" / "fracatlas"
RECIPE = ["--task", "hardware", "--image-size", "256", "--trainable-stages", "3", "--cache-lower",
          "--static-augment", "8", "--flip", "--epochs", "12", "--patience", "4", "--batch-size", "16", "--seed", "0"]


def build_tree(root: Path, per_class: int = 75) -> Path:
    """``root/hardware`` and ``root/no_hardware``: symlinks to the first images of each class by id."""
    with open(FRACATLAS_DIR / "dataset.csv", newline="") as handle:
        rows = sorted(csv.DictReader(handle), key=lambda r: r["image_id"])
    for flag, folder in (("1", "hardware"), ("0", "no_hardware")):
        (root / folder).mkdir(parents=True, exist_ok=True)
        for row in [r for r in rows if r["hardware"] == flag][:per_class]:
            sub = "Fractured" if row["fractured"] == "1" else "Non_fractured"
            target = root / folder / row["image_id"]
            if not target.exists():
                target.symlink_to(FRACATLAS_DIR / "images" / sub / row["image_id"])
    return root


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--keep", help="work in this folder and keep it (default: a temporary folder)")
    args = parser.parse_args()
    from radreview.cli import main as radreview
    from radreview.training.datasets import load_dataset
    from radreview.training.image_cache import load_letterboxed

    with tempfile.TemporaryDirectory() as tmp:
        work = Path(args.keep or tmp)
        tree = build_tree(work / "data")
        dataset = load_dataset(tree, task="hardware")
        start = time.perf_counter()
        load_letterboxed(dataset.samples, 256, 256)
        baseline = time.perf_counter() - start

        timings = {}
        start = time.perf_counter()
        assert radreview(["train", str(tree), "--out", str(work / "run"), "--name", "hardware-150", *RECIPE]) == 0
        timings["train"] = time.perf_counter() - start
        start = time.perf_counter()
        assert radreview(["export", str(work / "run" / "checkpoint.pt"), "--out", str(work / "hardware-150.onnx")]) == 0
        timings["export"] = time.perf_counter() - start
        start = time.perf_counter()
        assert radreview(["evaluate", str(work / "hardware-150.onnx"), str(tree), "--out", str(work / "evaluation"),
                          "--split", "test", "--split-file", str(work / "run" / "split.csv"), "--task", "hardware"]) == 0
        timings["evaluate"] = time.perf_counter() - start
        timings["total"] = sum(timings.values())

        import json

        metrics = json.loads((work / "evaluation" / "metrics.json").read_text())
        print(f"\n{len(dataset.samples)} images ({dataset.positives()} positive); recipe: {' '.join(RECIPE)}")
        print(f"baseline: read + letterbox all images once: {baseline:.1f} s")
        for step, seconds in timings.items():
            print(f"{step:<9} {seconds:7.1f} s  ({seconds / baseline:6.1f} x baseline)")
        label = next(iter(metrics["labels"].values()))
        auc = label["auc"]
        print(f"test AUC {auc['auc']:.3f} (DeLong 95% CI {auc['low']:.3f}-{auc['high']:.3f}; "
              f"{auc['n_pos']} pos / {auc['n_neg']} neg); budget 15 min: {'met' if timings['total'] < 900 else 'NOT met'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
