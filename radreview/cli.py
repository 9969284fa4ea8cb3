"""The ``radreview`` command.

With no sub-command it opens the viewer (optionally on PATH...). Sub-commands do batch work.
Each sub-command lives in ``radreview/commands/<name>.py`` with two functions,
``add_arguments(parser)`` and ``run(args) -> int``; they are imported only when used so that
``radreview --help`` and the viewer stay fast and torch-free.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from collections.abc import Sequence

from radreview import RESEARCH_USE_NOTICE, __version__

# name -> one-line help. The module radreview.commands.<name> implements it.
SUBCOMMANDS: dict[str, str] = {
    "view": "open the viewer (the default when no sub-command is given)",
    "render": "write the displayed 8-bit image of a file as PNG",
    "predict": "run the classifiers over files, folders or a DICOMDIR",
    "train": "train a classifier by transfer learning (needs the [train] extra)",
    "evaluate": "evaluate a model on a labelled dataset: ROC, operating points, calibration",
    "export": "export a trained checkpoint to a radreview .onnx model file (--int8: and its int8 twin)",
    "calibrate": "fit a model's scope check, calibration and operating points on its training data",
    "quantize": "make a static int8 copy of a model file, checked against float32 on its validation split",
    "study": "design, run and analyse reader studies",
}


def _command_module(name: str):
    return importlib.import_module(f"radreview.commands.{name.replace('-', '_')}")


def build_parser(argv: Sequence[str]) -> tuple[argparse.ArgumentParser, str]:
    """Build the parser; only the sub-command actually named is imported."""
    parser = argparse.ArgumentParser(
        prog="radreview",
        description=f"Review musculoskeletal radiographs with AI assistance. {RESEARCH_USE_NOTICE}",
    )
    parser.add_argument("--version", action="version", version=f"radreview {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug messages")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    chosen = next((a for a in argv if not a.startswith("-")), None)
    if chosen not in SUBCOMMANDS:
        chosen = "view"
    for name, help_text in SUBCOMMANDS.items():
        sub = subparsers.add_parser(name, help=help_text, description=help_text)
        if name == chosen:
            _command_module(name).add_arguments(sub)
    return parser, chosen


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    first = next((a for a in argv if not a.startswith("-")), None)
    # `radreview`, `radreview PATH...` and `radreview --smoke-test` all mean the viewer.
    if first not in SUBCOMMANDS and not any(a in ("-h", "--help", "--version") for a in argv):
        argv = ["view", *argv]
    parser, chosen = build_parser(argv)
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(levelname)s %(name)s: %(message)s",
    )
    if args.command is None:
        parser.print_help()
        return 0
    return int(_command_module(args.command).run(args) or 0)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
