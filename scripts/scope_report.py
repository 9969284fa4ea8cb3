"""How a model's scope check does on image sets it should accept and sets it should reject.

Runs the model through the viewer's own path (studies decoding and display pipeline, the engine's
scope verdicts) over named sets and prints, per set, how many images it calls out of scope, with
the distance percentiles (relative to the deciding check's limit: above 1 is out of scope, so
models with one or several checks read alike); ``--out`` writes the same as JSON for models/README.md.

Sets:
  --in-scope NAME=PATH    images the model should accept (a folder, or a FracAtlas split: PATH is
                          the dataset folder and NAME ends in ':test' / ':val' with --split-file)
  --out-of-scope NAME=PATH  images it should reject (folders of non-MSK radiographs, other modalities)
  --pip-non-msk           the non-MSK DICOMs of the pip packages pydicom-data and deid-data
                          (CT, MR, ultrasound, NM, chest CR, secondary captures, photographs)
  --synthetic             noise, blank, text and gradient images made here

Example (the figures in models/README.md):
  python scripts/scope_report.py models/msk_region_fracture_hardware.onnx \\
      --in-scope fracatlas:test=../shared/data/fracatlas --split-file models/evaluation/split.csv \\
      --in-scope knee_oa=/work/data/knee_oa_chen2018/images/test --in-scope ddh=/work/data/ddh_fraiwan_radoss/images \\
      --in-scope rg3=resources/demo/pydicom-data \\
      --out-of-scope kermany_chest=/work/data/kermany_chest_peds/images --pip-non-msk --synthetic --out scope.json
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
import tempfile
from pathlib import Path

import numpy as np

# Non-MSK pydicom-data / deid-data files (by name): other modalities, a chest CR, secondary
# captures and photographs. Test-only oddities (1-pixel frames, segmentations, RT dose) are left out.
PIP_NON_MSK = (
    "693_UNCR.dcm", "CT_small.dcm", "MR2_UNCR.dcm", "MR_small.dcm", "emri_small.dcm", "JPEG2000_UNC.dcm",
    "US1_UNCR.dcm", "OBXXXX1A.dcm", "color-px.dcm", "examples_palette.dcm", "examples_rgb_color.dcm",
    "MR-SIEMENS-DICOM-WithOverlays.dcm", "RG1_UNCR.dcm", "SC_rgb.dcm", "vlut_04.dcm", "mlut_18.dcm",
    "gdcm-US-ALOKA-16.dcm", "JPGLosslessP14SV1_1s_1f_8b.dcm", "eCT_Supplemental.dcm",
)


def pip_non_msk_files() -> list[Path]:
    import data_store  # pydicom-data
    import deid_data

    roots = [Path(data_store.__file__).parent / "data", Path(deid_data.__file__).parent / "data"]
    files = [p for root in roots[:1] for p in root.rglob("*.dcm") if p.name in PIP_NON_MSK]
    for sub in ("humans", "ultrasounds", "dicom-cookies", "animals"):  # deid-data: CT head, US, photos, dog chest
        files += sorted(p for p in (roots[1] / sub).rglob("*") if p.is_file() and not p.name.endswith((".py", ".pyc")))
    return sorted(set(files))


def synthetic_files(folder: Path) -> list[Path]:
    from PIL import Image, ImageDraw

    rng = np.random.default_rng(0)
    files = []
    for i in range(10):
        images = {
            "noise": Image.fromarray(rng.integers(0, 256, (512, 512), dtype=np.uint8)),
            "blank": Image.fromarray(np.full((400, 600), 25 * i, np.uint8)),
            "gradient": Image.fromarray(np.tile(np.linspace(0, 255, 512, dtype=np.uint8), (512, 1)).T.copy()
                                        if i % 2 else np.tile(np.linspace(0, 255, 512, dtype=np.uint8), (512, 1))),
        }
        page = Image.new("L", (640, 480), 255)
        draw = ImageDraw.Draw(page)
        for j in range(12):
            draw.text((10, 20 + 35 * j), f"Lorem ipsum dolor sit amet {i} {j}", fill=0)
        images["text"] = page
        for name, image in images.items():
            path = folder / f"{name}{i}.png"
            image.save(path)
            files.append(path)
    return files


def split_files(dataset: Path, split: str, split_file: Path) -> list[Path]:
    with open(split_file, newline="", encoding="utf-8") as handle:
        return [dataset / row["path"] for row in csv.DictReader(handle) if row["split"] == split]


def folder_files(path: Path) -> list[Path]:
    if path.is_file():
        return [path]
    return sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in (".dcm", ".png", ".jpg", ".jpeg"))


def verdicts(engine, files: list[Path]) -> tuple[list[float], list[str]]:
    """Each file's scope distance through the viewer's decoding and display path."""
    from radreview.studies import decode_image, index_paths, render_display

    distances, problems = [], []
    for path in files:
        try:
            index = index_paths([path])
            entries = [e for s in index.studies() for e in s.images()]
            if not entries:
                problems.append(f"{path.name}: {index.problems[0].reason if index.problems else 'no image'}")
                continue
            result = engine.predict(render_display(decode_image(entries[0])), with_cam=False)
        except Exception as exc:  # a file the viewer cannot show is not a scope verdict
            problems.append(f"{path.name}: {exc}")
            continue
        verdict = next(iter(result.scopes.values()))
        distance = float("inf") if verdict.distance is None else verdict.distance
        # relative to the deciding check's limit: a model may carry several checks (ScopeSet)
        distances.append(distance / verdict.threshold if verdict.threshold else float("inf"))
    return distances, problems


def summary(distances: list[float], expect_inside: bool) -> dict:
    """Distances relative to their limit: above 1 is out of scope."""
    d = np.asarray(distances, dtype=np.float64)
    outside = int(np.sum(~(d <= 1.0)))
    return {"n": int(len(d)), "out_of_scope": outside, "share_out_of_scope": outside / len(d) if len(d) else None,
            "expected": "in scope" if expect_inside else "out of scope",
            "relative_distance_p50": float(np.percentile(d, 50)) if len(d) else None,
            "relative_distance_p90": float(np.percentile(d, 90)) if len(d) else None}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("model")
    parser.add_argument("--in-scope", action="append", default=[], metavar="NAME=PATH")
    parser.add_argument("--out-of-scope", action="append", default=[], metavar="NAME=PATH")
    parser.add_argument("--split-file", type=Path)
    parser.add_argument("--pip-non-msk", action="store_true")
    parser.add_argument("--synthetic", action="store_true")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args(argv)

    from radreview.inference.engine import Engine
    from radreview.inference.registry import check_model_file

    model_file = check_model_file(args.model)
    check = model_file.card.scope_check
    if check is None:
        print(f"{args.model}: the model has no scope check ({model_file.card.scope_note})", file=sys.stderr)
        return 2
    engine = Engine([model_file], provider="cpu")
    sets: list[tuple[str, list[Path], bool]] = []
    for spec, inside in [(s, True) for s in args.in_scope] + [(s, False) for s in args.out_of_scope]:
        name, _, path = spec.partition("=")
        if ":" in name:
            name_part, split = name.split(":", 1)
            sets.append((name, split_files(Path(path), split, args.split_file), inside))
        else:
            sets.append((name, folder_files(Path(path)), inside))
    with tempfile.TemporaryDirectory() as tmp:
        if args.pip_non_msk:
            sets.append(("pip_non_msk_dicom", pip_non_msk_files(), False))
        if args.synthetic:
            sets.append(("synthetic", synthetic_files(Path(tmp)), False))
        report = {"model": model_file.path.name, "percentile": check.percentile,
                  "checks": {c.output: {"threshold": c.threshold, "percentile": c.percentile} for c in check.checks},
                  "distance": "relative to the deciding check's threshold (above 1: out of scope)", "sets": {}}
        for name, files, inside in sets:
            distances, problems = verdicts(engine, files)
            report["sets"][name] = {**summary(distances, inside), "unreadable": len(problems)}
            row = report["sets"][name]
            print(f"{name:<22} {row['expected']:<13} n={row['n']:<5} out of scope {row['out_of_scope']:>5} "
                  f"({100 * (row['share_out_of_scope'] or 0):5.1f}%)  median distance {row['relative_distance_p50'] or 0:.2f} x limit"
                  f"  ({len(problems)} unreadable)")
    if args.out:
        args.out.write_text(json.dumps(report, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
