"""Start-up and smoke-test times of the frozen app in dist/ against the source install, measured
in the same run, plus the app's size and where it goes (per component, and per package inside the
executable's module archive). Prints figures and frozen/source ratios; needs a frozen app
(`make installer`), otherwise it says so and exits 0. ``--size-only`` skips the timings."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "installer"))

import bundle  # noqa: E402

APP = REPO / "dist" / ("radreview.app" if sys.platform == "darwin" else "radreview")
FROZEN = (APP / "Contents" / "MacOS" / "radreview") if sys.platform == "darwin" else (
    APP / ("radreview.exe" if sys.platform == "win32" else "radreview"))
SOURCE = [sys.executable, "-c", "import sys; from radreview.cli import main; sys.exit(main())"]
ENV = dict(os.environ, QT_QPA_PLATFORM="offscreen")


def best_of(command: list[str], repeat: int = 3) -> float:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        subprocess.run(command, env=ENV, capture_output=True, check=True, timeout=600)
        times.append(time.perf_counter() - start)
    return min(times)


def smoke_seconds(command: list[str]) -> tuple[float, dict]:
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "smoke.json"
        start = time.perf_counter()
        subprocess.run([*command, "--smoke-test", "--smoke-out", str(out)], env=ENV, capture_output=True, timeout=600)
        elapsed = time.perf_counter() - start
        return elapsed, json.loads(out.read_text()) if out.is_file() else {}


def print_breakdown(total_bytes: int) -> None:
    """MiB per component, and per package inside the executable's module archive (compressed)."""
    for component, size in bundle.size_breakdown(APP):
        print(f"  {size / 2**20:7.1f} MiB  {100 * size / total_bytes:5.1f} %  {component}")
    try:
        packages = bundle.archive_breakdown(APP)
    except ImportError:
        print("  (the module archive's contents need PyInstaller to read)")
        return
    print("  module archive, compressed: " + ", ".join(
        f"{name} {size / 2**20:.1f}" for name, size in packages[:12]) + " MiB")


def main() -> int:
    if not FROZEN.is_file():
        print(f"bench_installer: no frozen app at {FROZEN} (run `make installer`); nothing to measure")
        return 0
    report = bundle.inspect_bundle(APP)
    print(f"frozen app: {report.total_mib:.1f} MiB in {report.file_count} files")
    print_breakdown(report.total_bytes)
    if "--size-only" in sys.argv[1:]:
        return 0
    frozen_version = best_of([str(FROZEN), "--version"])
    source_version = best_of([*SOURCE, "--version"])
    print(f"`radreview --version`: frozen {frozen_version:.2f} s, source {source_version:.2f} s, "
          f"ratio {frozen_version / source_version:.2f}")
    frozen_smoke, frozen_result = smoke_seconds([str(FROZEN)])
    source_smoke, source_result = smoke_seconds(SOURCE)
    print(f"`radreview --smoke-test`: frozen {frozen_smoke:.1f} s, source {source_smoke:.1f} s, "
          f"ratio {frozen_smoke / source_smoke:.2f}")
    for result, name in ((frozen_result, "frozen"), (source_result, "source")):
        checks = ", ".join(f"{c['name']} {c['seconds']:.2f} s" for c in result.get("checks", []))
        print(f"  {name}: {'passed' if result.get('ok') else 'FAILED'}; {checks}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
