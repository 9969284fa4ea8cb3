"""How the int8 twin's tiers differ from float32's on the validation split: by how many steps, on which labels.

The parity gate of ``radreview quantize`` counts every image whose tiers are not all the same. This
script says what those differences are, for the project's decision on the gate
(docs/performance.md, *int8 and its parity gate*): a tier moved by one step (below <-> possible,
possible <-> likely), by two (below <-> likely), or the image's scope verdict flipped (every label
of it then reads ``out_of_scope`` on one side). Images with a probability on a cut-off are left out,
as the gate leaves them out.

    python scripts/int8_tier_changes.py models/msk_region_fracture_hardware.onnx MODEL_int8.onnx \\
        ../shared/data/fracatlas --split-file models/evaluation/split.csv [--cache-dir DIR] [--out F.json]

Data attribution: FracAtlas (Abedeen et al. 2023), CC BY 4.0.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

STEPS = {"below": 0, "possible": 1, "likely": 2}


def tier_changes(float_results: list, int8_results: list) -> dict:
    """Counts of tier changes between two lists of engine results (same images, same order)."""
    from radreview.training.quantize import _on_cutoff, _tiers

    images = changed = scope_flips = 0
    by_size: Counter[str] = Counter()
    by_label: Counter[str] = Counter()
    for a, b in zip(float_results, int8_results):
        if _on_cutoff(a):
            continue
        images += 1
        tiers_a, tiers_b = _tiers(a), _tiers(b)
        moved = [k for k in tiers_a if tiers_a[k] != tiers_b.get(k)]
        changed += bool(moved)
        if any("out_of_scope" in (tiers_a[k], tiers_b.get(k)) for k in moved):
            scope_flips += 1
            continue
        for key in moved:
            x, y = tiers_a[key], tiers_b.get(key)
            size = abs(STEPS[x] - STEPS[y]) if x in STEPS and y in STEPS else f"{x or 'no tier'} -> {y or 'no tier'}"
            by_size[f"{size} step" if isinstance(size, int) else size] += 1
            by_label[key.split("/")[-1]] += 1
    return {"images": images, "images_with_a_change": changed, "images_whose_scope_verdict_flipped": scope_flips,
            "label_changes_by_size": dict(by_size), "one_step_changes_by_label": dict(by_label)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("float_model", type=Path)
    parser.add_argument("int8_model", type=Path)
    parser.add_argument("data", help="the dataset the model was trained on")
    parser.add_argument("--split-file", required=True)
    parser.add_argument("--cache-dir", type=Path)
    parser.add_argument("--fracatlas-tasks", default="region,fracture,hardware")
    parser.add_argument("--out", type=Path, help="also write the counts as JSON")
    args = parser.parse_args()

    from radreview.inference.card import read_card
    from radreview.training.quantize import _load_data, engine_results

    card = read_card(args.float_model)
    data = _load_data(card, args.data, args.split_file, 1, args.cache_dir, None,
                      fracatlas_tasks=tuple(args.fracatlas_tasks.split(",")))
    counts = tier_changes(engine_results(args.float_model, data.val), engine_results(args.int8_model, data.val))
    print(json.dumps(counts, indent=2))
    if args.out:
        args.out.write_text(json.dumps(counts, indent=2) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
