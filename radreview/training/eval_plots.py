"""The figures of ``radreview evaluate``: ROC curves, reliability diagram, CAM overlays (matplotlib, Agg)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # files only: no display, no Qt
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from PIL import Image  # noqa: E402

from radreview import RESEARCH_USE_NOTICE  # noqa: E402


def plot_roc(labels: dict[str, Any], path: Path, title: str) -> None:
    """ROC curves of several labels, AUC and DeLong CI in the legend, card operating points marked."""
    fig, ax = plt.subplots(figsize=(5.5, 5.5), dpi=110)
    for name, fig_data in labels.items():
        roc, auc = fig_data["roc"], fig_data["auc"]
        low, high = (auc["conservative_low"], auc["conservative_high"]) if auc.get("unreliable") else (auc["low"], auc["high"])
        mark = " \u2020" if auc.get("unreliable") else ""
        line = ax.plot(roc["fpr"], roc["tpr"], lw=1.6,
                       label=f"{name}: AUC {auc['auc']:.3f} ({low:.3f}-{high:.3f}){mark}; "
                             f"{auc['n_pos']} pos / {auc['n_neg']} neg")[0]
        for point, stats in fig_data.get("card_operating_points", {}).items():
            if point == "youden":
                continue
            ax.plot(1 - stats["specificity"]["estimate"], stats["sensitivity"]["estimate"],
                    "o" if point == "possible" else "s", color=line.get_color(), ms=5)
    ax.plot([0, 1], [0, 1], ls=":", color="grey", lw=1)
    ax.set(xlabel="1 - specificity", ylabel="sensitivity", xlim=(0, 1), ylim=(0, 1.01), aspect="equal")
    ax.set_title(title, fontsize=8)
    title = "DeLong 95% CI; o possible, \u25a1 likely"
    if any(fig_data["auc"].get("unreliable") for fig_data in labels.values()):
        title += "\n\u2020 few cases or AUC 0/1: conservative CI (DeLong unreliable)"
    ax.legend(loc="lower right", fontsize=7, title=title, title_fontsize=6)
    fig.text(0.01, 0.005, RESEARCH_USE_NOTICE, fontsize=5, color="grey")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def plot_reliability(labels: dict[str, Any], path: Path, title: str = "") -> None:
    """Observed frequency against mean predicted probability per bin (marker size: bin count)."""
    fig, ax = plt.subplots(figsize=(5.5, 5.5), dpi=110)
    for name, fig_data in labels.items():
        cal = fig_data.get("calibration")
        if not cal:
            continue
        rel = cal["reliability"]
        counts = np.asarray(rel["counts"], dtype=float)
        keep = counts > 0
        mean_p = np.asarray(rel["mean_predicted"], dtype=float)[keep]
        observed = np.asarray(rel["fraction_positive"], dtype=float)[keep]
        auc = fig_data.get("auc", {})
        line = ax.plot(mean_p, observed, "-", lw=1, label=f"{name}: ECE {cal['ece']:.3f}, Brier {cal['brier']:.3f}; "
                                                            f"{auc.get('n_pos', '?')} pos / {auc.get('n_neg', '?')} neg")[0]
        ax.scatter(mean_p, observed, s=8 + 40 * counts[keep] / max(counts.max(), 1), color=line.get_color())
    ax.plot([0, 1], [0, 1], ls=":", color="grey", lw=1)
    ax.set(xlabel="mean predicted probability", ylabel="observed frequency", xlim=(0, 1), ylim=(0, 1), aspect="equal")
    ax.legend(loc="upper left", fontsize=7)
    ax.set_title("Reliability (calibration)" + (f"\n{title}" if title else ""), fontsize=8)
    fig.text(0.01, 0.005, RESEARCH_USE_NOTICE, fontsize=5, color="grey")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def save_overlay(pixels: np.ndarray, heat: np.ndarray, path: Path, caption: str) -> None:
    """The letterboxed image with a jet heat map (min-max scaled) blended over it, side by side."""
    rows, cols = pixels.shape
    heat = np.asarray(heat, dtype=np.float32)
    low, high = float(heat.min()), float(heat.max())
    heat = (heat - low) / (high - low) if high > low else np.zeros_like(heat)
    heat = np.asarray(Image.fromarray(heat).resize((cols, rows), Image.BILINEAR))
    coloured = plt.get_cmap("jet")(heat)[:, :, :3]
    grey = np.repeat((pixels.astype(np.float32) / 255.0)[:, :, None], 3, axis=2)
    blended = 0.6 * grey + 0.4 * coloured
    fig, axes = plt.subplots(1, 2, figsize=(6, 3.3), dpi=100)
    axes[0].imshow(grey)
    axes[1].imshow(np.clip(blended, 0, 1))
    for ax in axes:
        ax.axis("off")
    fig.suptitle(caption, fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
