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
    "pacs": "talk to a PACS: echo, find, get, move, send, listen (DIMSE or DICOMweb)",
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
    _add_limit_option(parser, "limits_first")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    chosen = _first_word(argv)
    if chosen not in SUBCOMMANDS:
        chosen = "view"
    for name, help_text in SUBCOMMANDS.items():
        sub = subparsers.add_parser(name, help=help_text, description=help_text)
        if name == chosen:
            _command_module(name).add_arguments(sub)
            _add_limit_option(sub, "limits")
    return parser, chosen


def _first_word(argv: Sequence[str]) -> str | None:
    """The first argument that is not an option (nor the value of ``--limit NAME=VALUE``)."""
    skip = False
    for arg in argv:
        if skip:
            skip = False
        elif arg == "--limit":
            skip = True
        elif not arg.startswith("-"):
            return arg
    return None


def _add_limit_option(parser: argparse.ArgumentParser, dest: str) -> None:
    parser.add_argument("--limit", action="append", default=[], dest=dest, metavar="NAME=VALUE",
                        help="change a resource limit for this run, e.g. max_frame_pixels=100M "
                             "(repeatable; names and defaults in docs/security.md)")


def apply_limits(texts: Sequence[str]) -> None:
    """Put ``--limit NAME=VALUE`` options in force (on top of RADREVIEW_LIMIT_* variables)."""
    from radreview.limits import LimitError, limits, set_limits

    changes: dict[str, str] = {}
    for text in texts:
        name, sep, value = text.partition("=")
        if not sep:
            raise LimitError(f"--limit {text!r}: expected NAME=VALUE")
        changes[name] = value
    if changes:
        set_limits(limits().with_text(changes))


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    first = _first_word(argv)
    # `radreview`, `radreview PATH...` and `radreview --smoke-test` all mean the viewer.
    if first not in SUBCOMMANDS and not any(a in ("-h", "--help", "--version") for a in argv):
        argv = ["view", *argv]
    parser, chosen = build_parser(argv)
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(levelname)s %(name)s: %(message)s",
    )
    from radreview.limits import LimitError

    try:
        apply_limits([*getattr(args, "limits_first", []), *getattr(args, "limits", [])])
    except LimitError as exc:
        parser.error(str(exc))
    from radreview.studies.archives import remove_on_signals

    remove_on_signals()  # unpacked zip archives go on SIGTERM/SIGHUP too
    if args.command is None:
        parser.print_help()
        return 0
    return int(_command_module(args.command).run(args) or 0)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
