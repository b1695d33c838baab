"""Pictures of a run: training curves, and one sequence's inputs, hidden states, outputs and targets
over time (the 2011 release's ``visualize_batch``). Host-side; needs matplotlib
(``pip install 'arrayhf[plot]'``)."""

from __future__ import annotations

import math
import os

import numpy as np


def _pyplot():
    try:
        import matplotlib
    except ImportError as error:
        raise ImportError("plots need matplotlib: pip install 'arrayhf[plot]'") from error
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _series(records, key):
    values = [r.get(key) for r in records]
    return [math.nan if v is None else float(v) for v in values]


def plot_curves(records: list[dict], path: str | os.PathLike, title: str = "") -> None:
    """Train and test loss, test zero-one error, λ and CG steps per HF iteration, as one PNG."""
    plt = _pyplot()
    iterations = [r["iteration"] for r in records]
    figure, axes = plt.subplots(2, 2, figsize=(10, 7), sharex=True)
    losses, errors, damping, cg = axes.ravel()
    losses.semilogy(iterations, _series(records, "train_loss"), label="train")
    losses.semilogy(iterations, _series(records, "test_loss"), label="test")
    losses.set_ylabel("loss")
    losses.legend()
    errors.plot(iterations, [100 * e for e in _series(records, "test_error")], color="C3")
    errors.set_ylabel("test zero-one error (%)")
    damping.semilogy(iterations, _series(records, "damping"), color="C2")
    damping.set_ylabel("damping λ")
    cg.bar(iterations, _series(records, "cg_steps"), color="C4")
    cg.set_ylabel("CG steps")
    for axis in (damping, cg):
        axis.set_xlabel("HF iteration")
    for axis in axes.ravel():
        axis.grid(alpha=0.3)
    figure.suptitle(title)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)


def plot_sequence(inputs: np.ndarray, hiddens: np.ndarray, predictions: np.ndarray,
                  targets: np.ndarray, mask: np.ndarray, path: str | os.PathLike,
                  title: str = "") -> None:
    """One sequence over time (host arrays, time first): inputs, hidden states, and the outputs
    beside their targets at the steps that count."""
    plt = _pyplot()
    from matplotlib.ticker import MaxNLocator

    steps = np.arange(inputs.shape[0])
    figure, axes = plt.subplots(3, 1, figsize=(11, 8), sharex=True,
                                gridspec_kw={"height_ratios": [1, 2, 1]})
    axes[0].imshow(inputs.T, aspect="auto", interpolation="nearest", cmap="gray_r")
    axes[0].set_yticks(range(inputs.shape[1]))
    axes[0].set_ylabel("input channel")
    image = axes[1].imshow(hiddens.T, aspect="auto", interpolation="nearest", cmap="RdBu_r",
                           vmin=-1, vmax=1)
    axes[1].set_ylabel("hidden unit")
    figure.colorbar(image, ax=axes[1], fraction=0.02, pad=0.01)
    counted = mask > 0
    if predictions.shape[1] == 1:
        axes[2].plot(steps, predictions[:, 0], label="output", color="C0")
        axes[2].scatter(steps[counted], targets[counted, 0], label="target (counted steps)",
                        color="C3", zorder=3)
        axes[2].legend(loc="upper left")
        axes[2].set_ylabel("output")
    else:
        axes[2].imshow(predictions.T, aspect="auto", interpolation="nearest", cmap="viridis")
        target_steps, target_symbols = np.nonzero(targets * counted[:, None])
        axes[2].scatter(target_steps, target_symbols, marker="x", color="C3",
                        label="target (counted steps)")
        axes[2].legend(loc="upper left")
        axes[2].set_ylabel("output unit")
    axes[2].set_xlabel("time step")
    axes[2].xaxis.set_major_locator(MaxNLocator(integer=True))
    figure.suptitle(title)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)
