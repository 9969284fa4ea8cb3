"""Studies benchmarks: indexing speed, decode+render time of a 1760x1760 CR, memory while browsing.

Prints figures and ratios against baselines measured in the same run; asserts nothing about time.
Usage: ``.venv/bin/python tests/benchmarks/bench_studies.py [--files 500]``
"""

from __future__ import annotations

import argparse
import gc
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pydicom
from pydicom.data import get_testdata_file
from pydicom.uid import generate_uid

from radreview.studies import decode_image, demo_dir, index_paths, render_display
from radreview.studies.voi import Window


def rss_mb() -> float:
    """Resident set size now (Linux /proc; elsewhere the peak from getrusage)."""
    try:
        with open("/proc/self/statm") as handle:
            return int(handle.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20
    except OSError:
        import resource

        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        return peak / (2**20 if sys.platform == "darwin" else 2**10)


def make_copies(folder: Path, count: int) -> list[Path]:
    """``count`` distinct DICOM instances (new UIDs) from radiograph-like sources."""
    sources = [
        pydicom.dcmread(p)
        for p in (
            demo_dir() / "DEMO_HIP" / "IMG0000097.dcm",
            demo_dir() / "DEMO_SHOULDER" / "IMG0000040.dcm",
            Path(get_testdata_file("MR_small.dcm")),
        )
    ]
    paths = []
    for i in range(count):
        ds = sources[i % len(sources)]
        ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
        ds.StudyInstanceUID = ds.SeriesInstanceUID = generate_uid() if i % 10 == 0 else ds.StudyInstanceUID
        ds.InstanceNumber = i
        path = folder / f"sub{i % 7}" / f"img{i:04d}.dcm"
        path.parent.mkdir(exist_ok=True)
        ds.save_as(path)
        paths.append(path)
    return paths


def bench_index(count: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        make_copies(folder, count)
        index_paths([folder])  # warm the page cache, as a second look at a folder would be
        times = []
        for _ in range(3):
            start = time.perf_counter()
            index = index_paths([folder])
            times.append(time.perf_counter() - start)
        assert len(index.images()) == count and not index.problems
        best = min(times)
        # Baseline: pydicom reading every full header (no tag list), the naive approach.
        start = time.perf_counter()
        for path in sorted(folder.rglob("*.dcm")):
            pydicom.dcmread(path, stop_before_pixels=True)
        naive = time.perf_counter() - start
    print(f"index {count} DICOM files (headers only): {best * 1000:.0f} ms = {count / best:.0f} files/s "
          f"(target >= 500); bare pydicom dcmread (no values read, a lower bound on cost) {count / naive:.0f} files/s, time ratio {best / naive:.2f}x")


def bench_decode_render() -> None:
    for name in ("RG3_UNCR.dcm", "RG1_UNCR.dcm"):
        entry = index_paths([get_testdata_file(name)]).images()[0]
        decode_image(entry)  # page cache warm, as for a file just indexed
        first, windowing = [], []
        for _ in range(5):
            start = time.perf_counter()
            image = decode_image(entry)
            shown = render_display(image)
            first.append(time.perf_counter() - start)
        for i in range(20):
            window = Window(image.windows[0].center + i * 10, image.windows[0].width * (1 + i / 20))
            start = time.perf_counter()
            render_display(image, window)
            windowing.append(time.perf_counter() - start)
        # Baseline: pydicom's own pipeline (pixel_array + Modality LUT + VOI, float arrays).
        from pydicom.pixels import apply_modality_lut, apply_voi_lut

        baseline = []
        for _ in range(3):
            start = time.perf_counter()
            ds = pydicom.dcmread(get_testdata_file(name))
            values = apply_voi_lut(apply_modality_lut(ds.pixel_array, ds), ds)
            low, high = float(values.min()), float(values.max())
            _ = (255 - (values - low) / (high - low) * 255).astype(np.uint8)
            baseline.append(time.perf_counter() - start)
        print(f"{name} {shown.shape[1]}x{shown.shape[0]}: decode+render {statistics.median(first) * 1000:.0f} ms "
              f"(target <= 150 incl. display); window/level re-render {statistics.median(windowing) * 1000:.1f} ms "
              f"(aim < 15); pydicom pipeline {statistics.median(baseline) * 1000:.0f} ms, "
              f"ratio {statistics.median(baseline) / statistics.median(first):.2f}x")


def bench_memory() -> None:
    """RSS after browsing 20 and 200 images, keeping only what a viewer keeps (the last one)."""
    entries = index_paths([demo_dir()]).images()
    rg3 = index_paths([get_testdata_file("RG3_UNCR.dcm")]).images()
    entries = entries + rg3

    def browse(n: int) -> float:
        shown = None
        for i in range(n):
            image = decode_image(entries[i % len(entries)])
            shown = render_display(image)
        del shown
        gc.collect()
        return rss_mb()

    start = rss_mb()
    after_20 = browse(20)
    after_200 = browse(200)
    print(f"memory: start {start:.0f} MB, after 20 images {after_20:.0f} MB, after 200 images {after_200:.0f} MB, "
          f"growth 20->200 {after_200 - after_20:+.0f} MB (target within 100 MB)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=500)
    args = parser.parse_args()
    bench_index(args.files)
    bench_decode_render()
    bench_memory()


if __name__ == "__main__":
    main()
