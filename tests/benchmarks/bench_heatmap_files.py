"""Benchmark of the heatmap-file writer's compressor: zlib against the alternatives, on real overlays.

    .venv/bin/python tests/benchmarks/bench_heatmap_files.py [--images 24]

Prints, per compressor and level: CPU ms per file, MB/s of filtered rows and the compressed size as
a share of the raw rows, each against zlib level 1 measured in the same run (no asserts). The rows
are what ``radreview.inference.heatmap_files.png_bytes`` compresses: FracAtlas radiographs (both
sizes, 373x454 and up to 1024 px) with a smooth blob of heat blended over them in the jet colour map,
"Up"-filtered. Compressors that are not installed are listed as such (python-isal is a dependency;
zlib-ng and deflate/libdeflate are optional here: ``pip install zlib-ng deflate`` to compare).
Data attribution: FracAtlas (Abedeen et al. 2023), CC BY 4.0.
"""

from __future__ import annotations

import argparse
import importlib
import sys
import time
import zlib
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[2]
FRACATLAS = REPO.parent / "shared" / "data" / "fracatlas" / "images"
sys.path.insert(0, str(REPO))

from radreview.inference.heatmap_files import overlay  # noqa: E402 - after the repository is on the path


def filtered_rows(rgb: np.ndarray) -> bytes:
    """The PNG scanlines of ``rgb`` with the Up filter, as png_bytes builds them."""
    height = rgb.shape[0]
    rows = np.empty((height, 1 + rgb[0].size), np.uint8)
    rows[:, 0] = 2
    pixels = rows[:, 1:].reshape(rgb.shape)
    pixels[0] = rgb[0]
    np.subtract(rgb[1:], rgb[:-1], out=pixels[1:])
    return rows.tobytes()


def sample_rows(count: int) -> list[bytes]:
    from PIL import Image

    paths = sorted(FRACATLAS.rglob("*.jpg"))
    step = max(1, len(paths) // count)
    out = []
    for path in paths[::step][:count]:
        gray = np.asarray(Image.open(path).convert("L"))
        height, width = gray.shape
        yy, xx = np.mgrid[0:height, 0:width]
        heat = np.clip(1 - np.hypot(yy - 0.4 * height, xx - 0.5 * width) / (0.3 * max(height, width)), 0, 1)
        out.append(filtered_rows(overlay(gray, heat.astype(np.float32))))
    return out


def compressors() -> list[tuple[str, object]]:
    """(name, compress(data, level)) for each compressor installed; None where it is missing."""
    found: list[tuple[str, object]] = [("zlib", zlib.compress)]
    for name, module, attribute in (("isal", "isal.isal_zlib", "compress"), ("zlib-ng", "zlib_ng.zlib_ng", "compress"),
                                    ("libdeflate", "deflate", "zlib_compress")):
        try:
            found.append((name, getattr(importlib.import_module(module), attribute)))
        except ImportError:
            found.append((name, None))
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=24)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    rows = sample_rows(args.images)
    raw = sum(len(r) for r in rows)
    print(f"{len(rows)} overlays of FracAtlas radiographs, {raw / len(rows) / 1e6:.2f} MB of filtered rows per file")
    levels = {"zlib": (1, 2, 6), "isal": (0, 1, 2), "zlib-ng": (1, 2), "libdeflate": (1, 2)}
    baseline = None
    for name, compress in compressors():
        if compress is None:
            print(f"  {name:10s} not installed")
            continue
        for level in levels[name]:
            best = float("inf")
            for _ in range(args.repeats):
                start = time.process_time()
                size = sum(len(compress(r, level)) for r in rows)  # type: ignore[operator]
                best = min(best, time.process_time() - start)
            per_file = best * 1e3 / len(rows)
            if baseline is None:
                baseline = per_file
            print(f"  {name:10s} level {level}: {per_file:6.1f} ms CPU per file, {raw / best / 1e6:5.0f} MB/s, "
                  f"size {size / raw:.3f} of raw; {baseline / per_file:4.1f}x zlib level 1's speed")


if __name__ == "__main__":
    main()
