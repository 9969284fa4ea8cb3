"""``radreview [PATH...]``: open the viewer, optionally on files, folders or DICOMDIRs."""

from __future__ import annotations

import argparse
import sys


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("paths", nargs="*", metavar="PATH", help="DICOM/PNG/JPEG/TIFF files, folders or DICOMDIRs to open")
    parser.add_argument("--screenshot", metavar="OUT.png", help="(debug) save the window once loaded, then quit")
    parser.add_argument("--smoke-test", action="store_true",
                        help="check this installation end to end (decoders, demo study, every shipped model, "
                             "the main window offscreen), write a JSON result and exit 0 (passed) or 1")
    parser.add_argument("--smoke-out", metavar="RESULT.json", help="where --smoke-test writes its result")
    parser.add_argument("--size", nargs=2, type=int, metavar=("W", "H"), help="(debug) initial window size")


def run(args: argparse.Namespace) -> int:
    if args.smoke_test:  # radreview/smoke_test.py opens the window itself, offscreen
        from radreview.smoke_test import run_and_report

        return run_and_report(args.smoke_out)
    # Before Qt is imported: a missing xcb library is named with the command that installs it,
    # instead of Qt aborting with "could not load the Qt platform plugin" (radreview/system_check.py).
    from radreview.system_check import ensure_qt_can_start

    status = ensure_qt_can_start()
    if status:
        return status
    if sys.platform == "win32":  # ONNX Runtime's DLLs must load before Qt's (see installer/entry.py)
        import onnxruntime  # noqa: F401
    from radreview.gui.app import run_viewer  # Qt is imported only when the viewer is wanted

    return run_viewer(
        args.paths,
        screenshot=args.screenshot,
        smoke_test=args.smoke_test,
        geometry=tuple(args.size) if args.size else None,
    )
