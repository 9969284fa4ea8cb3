"""Draw the radreview app icon and write it as PNG, Windows .ico and macOS .icns.

The icon is generated, not stored, so that it never drifts from this script: a long bone on a
dark film-like tile with a warm heatmap glow over its middle (the AI overlay).

    python installer/make_icon.py OUT_DIR   ->  OUT_DIR/radreview.{png,ico,icns}
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

from PIL import Image, ImageDraw, ImageFilter

SIZE = 1024
ICO_SIZES = [(16, 16), (24, 24), (32, 32), (48, 48), (64, 64), (128, 128), (256, 256)]


def _bone(draw: ImageDraw.ImageDraw, size: int, fill: tuple[int, int, int, int]) -> None:
    """A femur-like bone along the tile's diagonal: a shaft with two knobbed ends."""
    c = size / 2
    half_length = size * 0.30
    shaft = size * 0.075
    knob = size * 0.085
    angle = math.radians(-45)
    dx, dy = math.cos(angle), math.sin(angle)
    nx, ny = -dy, dx  # normal to the shaft
    ends = [(c - dx * half_length, c - dy * half_length), (c + dx * half_length, c + dy * half_length)]
    (x0, y0), (x1, y1) = ends
    draw.polygon(
        [(x0 + nx * shaft, y0 + ny * shaft), (x1 + nx * shaft, y1 + ny * shaft),
         (x1 - nx * shaft, y1 - ny * shaft), (x0 - nx * shaft, y0 - ny * shaft)],
        fill=fill,
    )
    for x, y in ends:
        for side in (1, -1):  # two condyles at each end
            cx, cy = x + nx * knob * 0.8 * side, y + ny * knob * 0.8 * side
            draw.ellipse([cx - knob, cy - knob, cx + knob, cy + knob], fill=fill)


def draw_icon(size: int = SIZE) -> Image.Image:
    """Return the icon as an RGBA image of ``size`` x ``size`` pixels."""
    scale = 4 if size < 256 else 1  # supersample small sizes for smooth edges
    s = size * scale
    tile = Image.new("RGBA", (s, s), (0, 0, 0, 0))
    draw = ImageDraw.Draw(tile)
    margin = s * 0.06
    draw.rounded_rectangle([margin, margin, s - margin, s - margin], radius=s * 0.18, fill=(22, 33, 48, 255))

    bone = Image.new("RGBA", (s, s), (0, 0, 0, 0))
    _bone(ImageDraw.Draw(bone), s, (232, 236, 240, 255))
    tile.alpha_composite(bone)

    glow = Image.new("RGBA", (s, s), (0, 0, 0, 0))
    gdraw = ImageDraw.Draw(glow)
    r = s * 0.16
    gdraw.ellipse([s / 2 - r, s / 2 - r, s / 2 + r, s / 2 + r], fill=(255, 96, 32, 170))
    glow = glow.filter(ImageFilter.GaussianBlur(s * 0.05))
    # The heatmap tints the bone only, as the overlay does in the viewer.
    glow.putalpha(Image.composite(glow.getchannel("A"), Image.new("L", (s, s), 0), bone.getchannel("A")))
    tile.alpha_composite(glow)
    return tile.resize((size, size), Image.LANCZOS) if scale > 1 else tile


def write_icons(out_dir: str | Path) -> dict[str, Path]:
    """Write radreview.png (1024 px), radreview.ico and radreview.icns into ``out_dir``."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    icon = draw_icon(SIZE)
    paths = {"png": out / "radreview.png", "ico": out / "radreview.ico", "icns": out / "radreview.icns"}
    icon.save(paths["png"])
    icon.save(paths["ico"], sizes=ICO_SIZES)
    icon.save(paths["icns"])
    return paths


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out_dir", help="folder for radreview.png, .ico and .icns")
    args = parser.parse_args(argv)
    for path in write_icons(args.out_dir).values():
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
