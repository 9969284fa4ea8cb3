"""``radreview render FILE --out OUT.png [--window CENTER WIDTH] [--frame N]``.

Writes the displayed 8-bit image (default window: the file's first preset) at full resolution,
without annotations: what the viewer shows, for checking against other toolkits.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("file", help="a DICOM file or a PNG/JPEG/TIFF image")
    parser.add_argument("--out", required=True, help="the PNG file to write")
    parser.add_argument(
        "--window", nargs=2, type=float, metavar=("CENTER", "WIDTH"),
        help="window center and width (same VOI LUT Function as the file's first preset)",
    )
    parser.add_argument("--frame", type=int, default=0, help="frame of a multi-frame file (from 0)")
    parser.add_argument("--invert", action="store_true", help="invert the displayed image")


def run(args: argparse.Namespace) -> int:
    from PIL import Image

    from radreview.studies import StudyLoadError, decode_image, index_paths, render_display
    from radreview.studies.fileaccess import not_regular_reason

    if Path(args.out).suffix.lower() != ".png":  # lossless, bit for bit what the viewer shows
        print(f"radreview render: {args.out}: the output is a PNG file (name it .png)", file=sys.stderr)
        return 2
    path = Path(args.file)
    reason = not_regular_reason(path)  # a FIFO or device would block or stream forever
    if reason:
        print(f"radreview render: {path}: {reason}", file=sys.stderr)
        return 2
    index = index_paths([path])
    entries = index.images()
    if not entries:
        reasons = "; ".join(p.reason for p in index.problems) or "no image found"
        print(f"radreview render: {path}: {reasons}", file=sys.stderr)
        return 2
    try:
        image = decode_image(entries[0], args.frame)
    except StudyLoadError as exc:
        print(f"radreview render: {exc}", file=sys.stderr)
        return 2
    window = image.windows[0]
    if args.window is not None:
        center, width = args.window
        if width <= 0:
            print(f"radreview render: window width must be positive, got {width:g}", file=sys.stderr)
            return 2
        window = window.with_center_width(center, width)
    shown = render_display(image, window, invert=args.invert)
    out = Path(args.out)
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(shown).save(out, format="PNG")
    except OSError as exc:
        print(f"radreview render: cannot write {out}: {exc.strerror or exc}", file=sys.stderr)
        return 2
    print(f"wrote {out} ({shown.shape[1]}x{shown.shape[0]}, window {window.label})")
    return 0
