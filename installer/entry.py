"""Entry point of the frozen radreview app (PyInstaller runs this file as ``__main__``).

It does three things before handing over to ``radreview.cli.main``:
- loads ONNX Runtime (and onnx) BEFORE anything imports Qt. On Windows PySide6 carries its own,
  older ``msvcp140.dll``; once Qt has loaded it, ONNX Runtime's extension fails with "DLL load
  failed while importing onnxruntime_pybind11_state" (microsoft/onnxruntime#26127,
  wkentaro/labelme#1564, fixed there the same way). Only on Windows: elsewhere there is no
  clash, and loading both eagerly would add a second to every command's start-up.
- gives windowed builds (no console on Windows/macOS) somewhere to write: ``sys.stdout`` and
  ``sys.stderr`` are ``None`` there and logging would fail, so they go to a log file;
- calls ``multiprocessing.freeze_support()`` so that a child process re-entering the
  executable does not open a second viewer.
"""

from __future__ import annotations

import multiprocessing
import os
import sys


def _preload_inference_runtime() -> None:
    if sys.platform != "win32":
        return
    try:
        import onnxruntime  # noqa: F401  (import order matters, see the module docstring)
        import onnx  # noqa: F401  (same DLL problem: onnx_cpp2py_export)
    except ImportError as exc:  # the app still opens studies; inference reports the error itself
        print(f"radreview: ONNX Runtime could not be loaded: {exc}", file=sys.stderr)


def _attach_log_file_when_windowed() -> None:
    if sys.stdout is not None and sys.stderr is not None:
        return
    try:
        from platformdirs import user_log_dir

        log_dir = user_log_dir("radreview", appauthor=False)
        os.makedirs(log_dir, exist_ok=True)
        stream = open(os.path.join(log_dir, "radreview.log"), "a", encoding="utf-8", buffering=1)
    except OSError:
        stream = open(os.devnull, "w", encoding="utf-8")
    if sys.stdout is None:
        sys.stdout = stream
    if sys.stderr is None:
        sys.stderr = stream


def main() -> int:
    multiprocessing.freeze_support()
    _attach_log_file_when_windowed()
    _preload_inference_runtime()
    from radreview.cli import main as cli_main

    return cli_main()


if __name__ == "__main__":
    sys.exit(main())
