"""File ▸ Export View as PNG: the pane as shown, with a legend strip below it.

A view exported without a legend is a heatmap without a scale: whoever opens the PNG later
cannot tell which finding it shows, how probable the AI found it, or that it is a research tool.
The strip carries the lines of :func:`radreview.inference.presentation.legend_lines` (verdict,
study, region, scope, findings with probability, tier and cut-offs, the heatmap, the models,
the research-use notice) and, when a heatmap is drawn, its colour bar with the probability
labels of both ends. Only drawing happens here; every word comes from the presentation.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from PySide6.QtCore import QRect, Qt
from PySide6.QtGui import QColor, QFont, QFontMetrics, QImage, QPainter, QPixmap

from radreview import RESEARCH_USE_NOTICE
from radreview.inference.cam import colormap_lut
from radreview.inference.presentation import HeatmapLegend

MARGIN = 10
MIN_WIDTH = 520  # a narrow pane still gets a readable legend
BAR_WIDTH = 320
BAR_HEIGHT = 14
HEATMAP_PREFIX = "Heatmap: "  # the line of legend_lines() that the colour bar belongs to
BACKGROUND = QColor("#141414")
TEXT = QColor("#e8e8e8")
NOTICE = QColor("#d08000")


def _font(bold: bool = False) -> QFont:
    font = QFont()
    font.setPixelSize(13)
    font.setBold(bold)
    return font


def view_with_legend(view: QPixmap | QImage, lines: Sequence[str], heatmap: HeatmapLegend | None,
                     colormap: str = "jet") -> QImage:
    """The view with the legend strip below it (an RGB32 image at least :data:`MIN_WIDTH` wide)."""
    shot = view.toImage() if isinstance(view, QPixmap) else view
    shot.setDevicePixelRatio(1.0)  # the strip is laid out in the shot's own pixels
    width = max(shot.width(), MIN_WIDTH)
    text_width = width - 2 * MARGIN
    flags = int(Qt.TextFlag.TextWordWrap) | int(Qt.AlignmentFlag.AlignLeft)
    lines = [line for line in lines if line] or [RESEARCH_USE_NOTICE]
    fonts = [_font(bold=(i == 0 or line == RESEARCH_USE_NOTICE)) for i, line in enumerate(lines)]
    heights = [QFontMetrics(font).boundingRect(QRect(0, 0, text_width, 10_000), flags, line).height()
               for font, line in zip(fonts, lines)]
    bar = heatmap is not None and heatmap.drawn and bool(heatmap.low_text or heatmap.high_text)
    label_height = QFontMetrics(_font()).height()
    strip = MARGIN + sum(h + 3 for h in heights) + ((BAR_HEIGHT + label_height + 6) if bar else 0) + MARGIN
    out = QImage(width, shot.height() + strip, QImage.Format.Format_RGB32)
    out.fill(BACKGROUND)
    painter = QPainter(out)
    try:
        painter.drawImage(0, 0, shot)
        # the colour bar goes under the heatmap's line (or last, should there be none)
        bar_after = next((i for i, line in enumerate(lines) if line.startswith(HEATMAP_PREFIX)), len(lines) - 1)
        y = shot.height() + MARGIN
        for i, (font, line, height) in enumerate(zip(fonts, lines, heights)):
            painter.setFont(font)
            painter.setPen(NOTICE if line == RESEARCH_USE_NOTICE else TEXT)
            painter.drawText(QRect(MARGIN, y, text_width, height), flags, line)
            y += height + 3
            if bar and i == bar_after:
                y = _draw_bar(painter, y + 3, min(BAR_WIDTH, text_width), label_height, heatmap, colormap)
    finally:
        painter.end()
    return out


def _draw_bar(painter: QPainter, y: int, width: int, label_height: int, heatmap: HeatmapLegend,
              colormap: str) -> int:
    """The colour map with the probabilities of its ends under it; returns the next free row."""
    painter.drawImage(QRect(MARGIN, y, width, BAR_HEIGHT), _gradient(colormap))
    painter.setFont(_font())
    painter.setPen(TEXT)
    labels = QRect(MARGIN, y + BAR_HEIGHT + 2, width, label_height)
    painter.drawText(labels, int(Qt.AlignmentFlag.AlignLeft), heatmap.low_text)
    painter.drawText(labels, int(Qt.AlignmentFlag.AlignRight), heatmap.high_text)
    return y + BAR_HEIGHT + label_height + 6


def _gradient(colormap: str) -> QImage:
    row = np.ascontiguousarray(colormap_lut(colormap)[None, :, :])
    return QImage(row.data, 256, 1, 256 * 3, QImage.Format.Format_RGB888).copy()  # copy: owns its pixels
