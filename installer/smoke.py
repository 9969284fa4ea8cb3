"""Run the frozen app's ``--smoke-test`` and compare it with the source install's.

    python installer/smoke.py dist/radreview/radreview            # frozen only
    python installer/smoke.py dist/radreview/radreview --compare  # and against the source

The frozen app may be windowed (no console), so the verdict comes from its exit status and the
JSON file it writes, never from its output. Both runs use the offscreen Qt platform.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

INSTALLER_DIR = Path(__file__).resolve().parent
REPO = INSTALLER_DIR.parent
TIMEOUT_S = 600


class SmokeError(RuntimeError):
    pass


def _environment() -> dict[str, str]:
    env = dict(os.environ, QT_QPA_PLATFORM="offscreen")
    # The frozen app must not pick up the build machine's packages or a user's model folder.
    for name in ("PYTHONPATH", "PYTHONHOME", "RADREVIEW_MODELS"):
        env.pop(name, None)
    return env


def run_smoke(command: list[str], result_file: Path, label: str) -> dict:
    """Run one ``--smoke-test`` command; return its JSON result or raise :class:`SmokeError`."""
    result_file.parent.mkdir(parents=True, exist_ok=True)
    result_file.unlink(missing_ok=True)
    started = time.perf_counter()
    try:
        completed = subprocess.run(
            [*command, "--smoke-test", "--smoke-out", str(result_file)],
            env=_environment(), capture_output=True, text=True, timeout=TIMEOUT_S, cwd=result_file.parent,
        )
    except subprocess.TimeoutExpired as exc:
        raise SmokeError(f"{label} smoke test did not finish in {TIMEOUT_S} s") from exc
    seconds = time.perf_counter() - started
    output = (completed.stdout or "") + (completed.stderr or "")
    if not result_file.is_file():
        raise SmokeError(f"{label} smoke test wrote no result (exit status {completed.returncode}):\n{output[-4000:]}")
    result = json.loads(result_file.read_text(encoding="utf-8"))
    result["wall_seconds"] = round(seconds, 2)
    print(f"{label}: exit status {completed.returncode}, {seconds:.1f} s wall")
    for check in result.get("checks", []):
        print(f"  {'ok  ' if check['ok'] else 'FAIL'} {check['name']:<12} {check['seconds']:7.2f} s  {check['error']}")
    if completed.returncode != 0 or not result.get("ok"):
        raise SmokeError(f"{label} smoke test failed (exit status {completed.returncode}); see {result_file}\n{output[-4000:]}")
    return result


def source_command() -> list[str]:
    """``radreview`` from the source install, through the same CLI entry as the console script."""
    return [sys.executable, "-c", "import sys; from radreview.cli import main; sys.exit(main())"]


def smoke_frozen_app(executable: Path, out_dir: Path, compare_source: bool = True) -> dict:
    """Smoke-test the frozen app and, optionally, check its predictions against the source."""
    sys.path.insert(0, str(REPO))
    from radreview.smoke_test import compare_predictions

    executable, out_dir = executable.resolve(), out_dir.resolve()  # the runs start in out_dir
    if not executable.is_file():
        raise SmokeError(f"{executable}: no frozen app (build it first)")
    frozen = run_smoke([str(executable)], out_dir / "frozen.json", "frozen app")
    summary = {"frozen_seconds": frozen["wall_seconds"], "frozen_result": str(out_dir / "frozen.json"),
               "provider": frozen.get("provider"), "models": sorted(frozen.get("predictions", {}))}
    if not frozen.get("frozen"):
        raise SmokeError(f"{executable} did not report itself as frozen: a source install answered instead")
    if compare_source:
        source = run_smoke(source_command(), out_dir / "source.json", "source install")
        differences = compare_predictions(frozen, source)
        if differences:
            raise SmokeError("frozen and source predictions differ:\n  " + "\n  ".join(differences[:20]))
        n = sum(len(labels) for per_image in frozen["predictions"].values() for labels in per_image.values())
        print(f"frozen and source agree on {n} predictions")
        summary.update(source_seconds=source["wall_seconds"], compared_predictions=n)
    return summary


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("executable", help="the frozen app's executable")
    parser.add_argument("--out-dir", default=str(REPO / "build" / "installer" / "smoke"))
    parser.add_argument("--compare", action="store_true", help="also run the source install and compare")
    args = parser.parse_args(argv)
    try:
        summary = smoke_frozen_app(Path(args.executable), Path(args.out_dir), compare_source=args.compare)
    except SmokeError as exc:
        print(f"smoke: FAILED: {exc}", file=sys.stderr)
        return 1
    print(json.dumps(summary, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
