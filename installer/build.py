"""Build the radreview app for this platform; the one script behind ``make installer`` and CI.

    python installer/build.py                 # one-folder app in dist/, checked, smoke-tested
    python installer/build.py --package       # ... then the installer: .exe (Windows), .dmg (macOS), .tar.gz (Linux)
    python installer/build.py --no-smoke      # build and check only

Steps (each timed, the summary goes to ``dist/build-report.json``):
1. icons from ``installer/make_icon.py``;
2. PyInstaller with ``installer/radreview.spec``;
3. bundle check: size, no torch or training code, the Qt platform plugins present;
4. smoke test: the frozen app's ``--smoke-test`` offscreen, compared with the same test run
   from the source install (``installer/smoke.py``): the predictions must agree;
5. with ``--package``: signing and installers (``installer/windows_package.py``,
   ``installer/macos_package.py``), only signing when credentials are in the environment.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tarfile
import time
from pathlib import Path

INSTALLER_DIR = Path(__file__).resolve().parent
sys.path.insert(0, str(INSTALLER_DIR))

import bundle  # noqa: E402
import make_icon  # noqa: E402
import smoke  # noqa: E402

REPO = bundle.REPO_ROOT
SIZE_BUDGET_MIB = 300

# Qt platform plugins the app must carry on each system: offscreen for the smoke test, and the
# native one for users.
REQUIRED_PLATFORM_PLUGINS = {
    "linux": ("libqoffscreen.so", "libqxcb.so"),
    "win32": ("qoffscreen.dll", "qwindows.dll"),
    "darwin": ("libqoffscreen.dylib", "libqcocoa.dylib"),
}


class BuildError(RuntimeError):
    pass


def _step(name: str, timings: dict[str, float]):
    """Context manager printing and recording how long a step took."""
    class _Timer:
        def __enter__(self):
            print(f"== {name}", flush=True)
            self.t0 = time.perf_counter()

        def __exit__(self, *exc):
            timings[name] = round(time.perf_counter() - self.t0, 1)
            print(f"== {name}: {timings[name]:.1f} s", flush=True)
            return False

    return _Timer()


def app_dir(dist: Path) -> Path:
    """The folder that is the app: dist/radreview, or dist/radreview.app on macOS."""
    return dist / (f"{bundle.APP_NAME}.app" if sys.platform == "darwin" else bundle.APP_NAME)


def frozen_executable(dist: Path) -> Path:
    if sys.platform == "darwin":
        return app_dir(dist) / "Contents" / "MacOS" / bundle.APP_NAME
    return app_dir(dist) / (f"{bundle.APP_NAME}.exe" if sys.platform == "win32" else bundle.APP_NAME)


def check_prerequisites() -> None:
    if sys.platform == "darwin":
        import platform

        if platform.machine() != "arm64":
            raise BuildError("macOS builds are arm64 only: onnxruntime ships no x86_64 macOS wheel")
    for folder in bundle.DATA_FOLDERS:
        if not (REPO / folder).is_dir():
            print(f"build: WARNING: {folder}/ is missing; the app will ship without it", file=sys.stderr)
    if not list((REPO / "models").glob("*.onnx")):
        print("build: WARNING: models/ holds no .onnx model; the smoke test will fail", file=sys.stderr)


def run_pyinstaller(dist: Path, work: Path, icon_dir: Path, clean: bool) -> None:
    cmd = [sys.executable, "-m", "PyInstaller", "--noconfirm", "--log-level", "WARN",
           "--distpath", str(dist), "--workpath", str(work), str(INSTALLER_DIR / "radreview.spec")]
    if clean:
        cmd.insert(4, "--clean")
    env = dict(os.environ, RADREVIEW_ICON_DIR=str(icon_dir))
    print(" ".join(cmd), flush=True)
    result = subprocess.run(cmd, cwd=REPO, env=env)
    if result.returncode != 0:
        raise BuildError(f"PyInstaller failed with exit status {result.returncode}")


def _elf_loads_aligned(path: Path) -> bool:
    """Whether every PT_LOAD segment of a 64-bit little-endian ELF file keeps offset ≡ address
    (mod alignment): what the loader checks, and what ``strip`` breaks in patchelf'd files."""
    import struct

    data = path.read_bytes()
    if data[:4] != b"\x7fELF" or data[4] != 2 or data[5] != 1:
        return True  # not ELF64 LE: leave the verdict to the smoke test
    phoff, = struct.unpack_from("<Q", data, 0x20)
    phentsize, phnum = struct.unpack_from("<HH", data, 0x36)
    for i in range(phnum):
        p_type, _flags, p_offset, p_vaddr, _paddr, _filesz, _memsz, p_align = struct.unpack_from(
            "<IIQQQQQQ", data, phoff + i * phentsize)
        if p_type == 1 and p_align > 1 and (p_offset - p_vaddr) % p_align:
            return False
    return True


def _rewritten_by_auditwheel(path: Path) -> bool:
    """Libraries grafted into ``*.libs`` and extensions whose RUNPATH points there were edited
    by patchelf; ``strip`` corrupts those ("ELF load command ... not page-aligned")."""
    if any(part.endswith(".libs") for part in path.parts):
        return True
    result = subprocess.run(["readelf", "-d", str(path)], capture_output=True, text=True)
    return result.returncode != 0 or any(
        ("RUNPATH" in line or "RPATH" in line) and ".libs" in line for line in result.stdout.splitlines())


def strip_binaries(dist: Path) -> int:
    """Strip debug symbols on Linux from the binaries that can take it; return the bytes saved.

    PyInstaller's own ``strip`` option strips everything, including wheel libraries rewritten
    by auditwheel, which then fail to load. Here: libpython, the standard library's extensions
    and wheel binaries that patchelf never touched; each stripped file's load segments are
    checked and the original is kept when they are not aligned.
    """
    if not sys.platform.startswith("linux") or shutil.which("strip") is None or shutil.which("readelf") is None:
        return 0
    internal = app_dir(dist) / "_internal"
    candidates = [p for p in internal.rglob("*.so*") if p.is_file() and not p.is_symlink()]
    saved = stripped = 0
    for path in candidates:
        is_runtime = path.name.startswith("libpython3") or "lib-dynload" in path.parts
        if not is_runtime and _rewritten_by_auditwheel(path):
            continue
        original = path.read_bytes()
        subprocess.run(["strip", "--strip-unneeded", str(path)], check=False, capture_output=True)
        if not _elf_loads_aligned(path):
            path.write_bytes(original)
            continue
        if path.stat().st_size < len(original):
            stripped += 1
            saved += len(original) - path.stat().st_size
    print(f"stripped {stripped} of {len(candidates)} binaries: {saved / 2**20:.1f} MiB saved")
    return saved


def check_bundle(dist: Path) -> dict:
    root = app_dir(dist)
    report = bundle.inspect_bundle(root)
    print(f"app: {root} — {report.total_mib:.1f} MiB in {report.file_count} files (budget {SIZE_BUDGET_MIB} MiB)")
    breakdown = bundle.size_breakdown(root)
    for component, size in breakdown[:12]:
        print(f"  {size / 2**20:7.1f} MiB  {component}")
    problems = []
    if report.forbidden:
        problems.append("forbidden content in the app: " + ", ".join(report.forbidden[:10]))
    names = {p.name for p in _all_files(root)}
    for plugin in REQUIRED_PLATFORM_PLUGINS.get(sys.platform, ()):
        if plugin not in names:
            problems.append(f"Qt platform plugin {plugin} is missing")
    if not frozen_executable(dist).is_file():
        problems.append(f"no executable at {frozen_executable(dist)}")
    if problems:
        raise BuildError("; ".join(problems))
    if report.total_mib > SIZE_BUDGET_MIB:
        print(f"build: WARNING: the app is {report.total_mib:.0f} MiB, over the {SIZE_BUDGET_MIB} MiB aim", file=sys.stderr)
    return {**report.to_dict(), "components_bytes": dict(breakdown)}


def _all_files(root: Path):
    return (p for p in root.rglob("*") if p.is_file())


def package(dist: Path, version: str) -> list[Path]:
    """Platform installers from the built app; signing only when credentials exist."""
    out = dist / "installers"
    out.mkdir(parents=True, exist_ok=True)
    if sys.platform == "win32":
        import windows_package

        return [windows_package.build_installer(app_dir(dist), out, version)]
    if sys.platform == "darwin":
        import macos_package

        return [macos_package.package_app(app_dir(dist), out, version)]
    archive = out / f"{bundle.APP_NAME}-{version}-{bundle.platform_tag()}.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(app_dir(dist), arcname=f"{bundle.APP_NAME}-{version}")
    print(f"wrote {archive} ({archive.stat().st_size / 2**20:.1f} MiB)")
    return [archive]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Build the radreview app (and installer) for this platform.")
    parser.add_argument("--dist", default=str(REPO / "dist"), help="output folder (default: dist/)")
    parser.add_argument("--work", default=str(REPO / "build" / "pyinstaller"), help="PyInstaller work folder")
    parser.add_argument("--clean", action="store_true", help="discard PyInstaller's cache first")
    parser.add_argument("--no-build", action="store_true", help="reuse the app already in --dist")
    parser.add_argument("--no-smoke", action="store_true", help="skip the smoke test")
    parser.add_argument("--no-compare", action="store_true", help="smoke-test the frozen app only, not the source")
    parser.add_argument("--package", action="store_true", help="also build the platform installer")
    args = parser.parse_args(argv)

    from radreview import __version__

    dist, work = Path(args.dist).resolve(), Path(args.work).resolve()
    icon_dir = REPO / "build" / "installer" / "icons"
    timings: dict[str, float] = {}
    report: dict = {"version": __version__, "platform": bundle.platform_tag(), "timings_s": timings}
    try:
        check_prerequisites()
        if not args.no_build:
            with _step("icons", timings):
                make_icon.write_icons(icon_dir)
            with _step("pyinstaller", timings):
                run_pyinstaller(dist, work, icon_dir, args.clean)
                strip_binaries(dist)
                saved = bundle.minify_json_files(app_dir(dist))
                print(f"minified JSON data files: {saved / 2**20:.1f} MiB saved")
                saved = bundle.trim_highdicom_tables(app_dir(dist))
                print(f"trimmed highdicom's module table to the IODs radreview writes: {saved / 2**20:.1f} MiB saved")
        with _step("bundle check", timings):
            report["bundle"] = check_bundle(dist)
        if not args.no_smoke:
            with _step("smoke test", timings):
                report["smoke"] = smoke.smoke_frozen_app(
                    frozen_executable(dist), REPO / "build" / "installer" / "smoke", compare_source=not args.no_compare
                )
        if args.package:
            with _step("package", timings):
                report["installers"] = [str(p) for p in package(dist, __version__)]
    except (BuildError, smoke.SmokeError) as exc:
        print(f"build: FAILED: {exc}", file=sys.stderr)
        report["error"] = str(exc)
        _write_report(dist, report)
        return 1
    _write_report(dist, report)
    print(f"build: OK ({sum(timings.values()):.0f} s: " + ", ".join(f"{k} {v:.0f} s" for k, v in timings.items()) + ")")
    return 0


def _write_report(dist: Path, report: dict) -> None:
    dist.mkdir(parents=True, exist_ok=True)
    (dist / "build-report.json").write_text(json.dumps(report, indent=1, default=str), encoding="utf-8")


if __name__ == "__main__":
    sys.exit(main())
