"""Training plots for the problem scripts (matplotlib, Agg backend, no display needed).

Figures are built with `matplotlib.figure.Figure` (not pyplot), so no global state or GUI backend is
touched, and written atomically: a half-written PNG never replaces a good one.
"""
from __future__ import annotations

import io
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
from matplotlib.figure import Figure  # noqa: E402
from matplotlib.ticker import MaxNLocator  # noqa: E402

from scratchnet.io import atomic_write  # noqa: E402


def save_figure(fig, path, dpi: int = 120, bbox_inches="tight") -> Path:
    """Render `fig` in memory, then write it atomically (every problem script's figures go through here)."""
    buf = io.BytesIO()
    fig.savefig(buf, format=Path(path).suffix.lstrip(".") or "png", dpi=dpi, bbox_inches=bbox_inches)
    atomic_write(path, lambda f: f.write(buf.getvalue()))
    return Path(path)


def _print_sized(ax, legend: bool) -> None:
    """Fonts for a figure drawn at its printed size (about 4.4 in wide): >= 7.5 pt on paper."""
    ax.xaxis.label.set_fontsize(8.5)
    ax.yaxis.label.set_fontsize(8.5)
    ax.title.set_fontsize(9)
    ax.tick_params(labelsize=8)
    if legend:
        ax.legend(fontsize=8)


def plot_loss_curves(curves, path, title: str = "Training loss", ylabel: str = "training loss (cross-entropy)",
                     logy: bool = False) -> Path:
    """One line per run: `curves` is a list of (label, epochs, losses); epochs are 1-based numbers.

    Used for a single run and for the with/without batch-norm comparison (two curves, one axis).
    """
    fig = Figure(figsize=(4.4, 3.0))  # the report prints it beside a table, about 110 mm wide
    ax = fig.add_subplot(1, 1, 1)
    for label, epochs, losses in curves:
        ax.plot(list(epochs), list(losses), marker="o", markersize=3, label=label)
    ax.set_xlabel("epoch")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))  # epochs are whole numbers
    ax.set_ylabel(ylabel)
    if logy:
        ax.set_yscale("log")
    ax.set_title(title)
    ax.grid(True, alpha=0.3)
    _print_sized(ax, legend=len(curves) > 1 or any(label for label, _, _ in curves))
    return save_figure(fig, path)


def plot_accuracy_vs_time(runs, path, title: str = "Test accuracy vs wall time",
                          ylabel: str = "test accuracy") -> Path:
    """One line per run: `runs` is a list of (label, seconds, accuracies), cumulative seconds at each point.

    Accuracies are fractions in [0, 1] (shown as such, axis labelled).
    """
    fig = Figure(figsize=(4.2, 2.9))  # printed at half the text width (95 mm)
    ax = fig.add_subplot(1, 1, 1)
    for label, seconds, accuracies in runs:
        ax.plot(list(seconds), list(accuracies), marker="o", markersize=3, label=label)
    ax.set_xlabel("wall time (s)")
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.grid(True, alpha=0.3)
    _print_sized(ax, legend=bool(runs))
    return save_figure(fig, path)


def plot_ablation(labels, accuracies, path, title: str = "Ablation", ylabel: str = "test accuracy") -> Path:
    """Horizontal bars, one per run, labelled with the accuracy (a fraction); None (diverged) is drawn as
    an empty bar marked 'diverged'. The first run is the reference: a dashed line marks its value."""
    fig = Figure(figsize=(6.4, 0.45 * len(labels) + 1.4))
    ax = fig.add_subplot(1, 1, 1)
    values = [0.0 if a is None else a for a in accuracies]
    ax.barh(range(len(labels)), values, color=["#4c72b0" if a is not None else "#cccccc" for a in accuracies])
    for i, a in enumerate(accuracies):
        ax.text(values[i] + 0.005, i, "diverged" if a is None else f"{a:.3f}", va="center", fontsize=8)
    if accuracies and accuracies[0] is not None:
        ax.axvline(accuracies[0], color="black", linestyle="--", linewidth=0.8)
    ax.set_yticks(range(len(labels)), labels)
    ax.invert_yaxis()
    ax.set_xlim(0, min(1.0, max(values + [0.1]) * 1.15))
    ax.set_xlabel(ylabel)
    ax.set_title(title)
    ax.grid(True, axis="x", alpha=0.3)
    return save_figure(fig, path)
