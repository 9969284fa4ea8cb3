"""``radreview [PATH...]``: open the viewer, optionally on files, folders or DICOMDIRs."""

from __future__ import annotations

import argparse


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("paths", nargs="*", metavar="PATH", help="DICOM/PNG/JPEG/TIFF files, folders or DICOMDIRs to open")
    parser.add_argument("--screenshot", metavar="OUT.png", help="(debug) save the window once loaded, then quit")
    parser.add_argument("--smoke-test", action="store_true", help="(debug) open and close the window, then quit")
    parser.add_argument("--size", nargs=2, type=int, metavar=("W", "H"), help="(debug) initial window size")


def run(args: argparse.Namespace) -> int:
    from radreview.gui.app import run_viewer  # Qt is imported only when the viewer is wanted

    return run_viewer(
        args.paths,
        screenshot=args.screenshot,
        smoke_test=args.smoke_test,
        geometry=tuple(args.size) if args.size else None,
    )
