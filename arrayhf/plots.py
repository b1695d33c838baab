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


def _series(records, key, scale=1.0):
    values = [r.get(key) for r in records]
    return [math.nan if v is None else scale * float(v) for v in values]


def plot_curves(records: list[dict], path: str | os.PathLike, title: str = "", *,
                threshold: float | None = None, entropy_bits: float | None = None) -> None:
    """Every iteration's numbers as one PNG: losses (bits per character with the unigram entropy
    line when ``entropy_bits`` is given: a text run), the test zero-one error with the success
    ``threshold``, λ, ρ with the (D2) bounds 1/4 and 3/4, ‖g‖, |θ|, CG steps and seconds per
    iteration, against integer HF iterations."""
    plt = _pyplot()
    from matplotlib.ticker import MaxNLocator

    iterations = [r["iteration"] for r in records]
    figure, axes = plt.subplots(4, 2, figsize=(11, 11), sharex=True)
    losses, errors, damping, rho, gradient, theta, cg, seconds = axes.ravel()
    if entropy_bits is not None:
        to_bits = 1 / math.log(2)
        losses.plot(iterations, _series(records, "train_loss", to_bits), label="train")
        losses.plot(iterations, _series(records, "test_loss", to_bits), label="held out")
        losses.axhline(entropy_bits, color="0.4", linestyle="--",
                       label=f"unigram entropy {entropy_bits:.3f}")
        losses.set_ylabel("bits per character")
    else:
        losses.semilogy(iterations, _series(records, "train_loss"), label="train")
        losses.semilogy(iterations, _series(records, "test_loss"), label="test")
        losses.set_ylabel("loss")
    losses.legend()
    errors.plot(iterations, _series(records, "test_error", 100.0), color="C3", marker=".")
    if threshold is not None:
        errors.axhline(100 * threshold, color="C2", linestyle="--",
                       label=f"solved below {100 * threshold:g}%")
        errors.legend()
    errors.set_ylabel("test zero-one error (%)")
    damping.semilogy(iterations, _series(records, "damping"), color="C2")
    damping.set_ylabel("damping λ")
    _plot_rho(rho, iterations, _series(records, "rho"))
    gradient.semilogy(iterations, _series(records, "grad_norm"), color="C5")
    gradient.set_ylabel("‖g‖")
    theta.plot(iterations, _series(records, "theta_norm"), color="C6")
    theta.set_ylabel("|θ|")
    cg.bar(iterations, _series(records, "cg_steps"), color="C4")
    cg.set_ylabel("CG steps")
    seconds.bar(iterations, _series(records, "seconds"), color="C7")
    seconds.set_ylabel("seconds per iteration")
    for axis in (cg, seconds):
        axis.set_xlabel("HF iteration")
    for axis in axes.ravel():
        axis.grid(alpha=0.3)
        axis.xaxis.set_major_locator(MaxNLocator(integer=True))
    figure.suptitle(title)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)


def _plot_rho(axis, iterations: list, rho: list) -> None:
    """ρ per iteration; −∞ (the CG step raised the loss) drawn as a cross at the bottom."""
    finite = [value if math.isfinite(value) else math.nan for value in rho]
    axis.plot(iterations, finite, color="C1", marker=".", label="ρ")
    bottom = min([value for value in finite if math.isfinite(value)] + [0.0]) - 0.25
    rejected = [i for i, value in zip(iterations, rho) if value == -math.inf]
    if rejected:
        axis.scatter(rejected, [bottom] * len(rejected), marker="x", color="C3",
                     label="rejected (ρ = −∞)")
    for bound in (0.25, 0.75):
        axis.axhline(bound, color="0.5", linestyle=":", linewidth=1)
    axis.set_ylabel("ρ (λ grows below 1/4, shrinks above 3/4)")
    axis.legend(loc="lower right")


def plot_sequence(inputs: np.ndarray, hiddens: np.ndarray, predictions: np.ndarray,
                  targets: np.ndarray, mask: np.ndarray, path: str | os.PathLike,
                  title: str = "") -> None:
    """One sequence over time (host arrays, time first, steps t = 1 … L): inputs, hidden states,
    and the outputs beside their targets at the steps that count. Every panel has its scale in
    the same right-hand column, so the time steps of all panels line up."""
    plt = _pyplot()
    from matplotlib.ticker import MaxNLocator

    length = inputs.shape[0]
    extent = (0.5, length + 0.5)
    figure = plt.figure(figsize=(11, 8))
    grid = figure.add_gridspec(3, 2, width_ratios=[40, 1], height_ratios=[1, 2, 1],
                               wspace=0.03)
    rows = [figure.add_subplot(grid[0, 0])]
    rows += [figure.add_subplot(grid[i, 0], sharex=rows[0]) for i in (1, 2)]
    scales = [figure.add_subplot(grid[i, 1]) for i in range(3)]
    image = rows[0].imshow(inputs.T, aspect="auto", interpolation="nearest", cmap="gray_r",
                           extent=(*extent, inputs.shape[1] - 0.5, -0.5))
    figure.colorbar(image, cax=scales[0], label="input value")
    rows[0].set_yticks(range(inputs.shape[1]))
    rows[0].set_ylabel("input channel")
    image = rows[1].imshow(hiddens.T, aspect="auto", interpolation="nearest", cmap="RdBu_r",
                           vmin=-1, vmax=1, extent=(*extent, hiddens.shape[1] - 0.5, -0.5))
    figure.colorbar(image, cax=scales[1], label="hidden state")
    rows[1].set_ylabel("hidden unit")
    _plot_outputs(figure, rows[2], scales[2], predictions, targets, mask > 0, extent)
    rows[2].set_xlabel("time step t")
    rows[2].xaxis.set_major_locator(MaxNLocator(integer=True))
    for axis in rows[:2]:
        axis.tick_params(labelbottom=False)
    figure.suptitle(title)
    figure.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(figure)


def _plot_outputs(figure, axis, scale, predictions, targets, counted, extent) -> None:
    """The outputs and the targets at the counted steps: a line and dots for one output, a
    heat map with its colour scale and crosses for several."""
    steps = np.arange(1, predictions.shape[0] + 1)
    if predictions.shape[1] == 1:
        axis.plot(steps, predictions[:, 0], label="output", color="C0")
        axis.scatter(steps[counted], targets[counted, 0], label="target (counted steps)",
                     color="C3", zorder=3)
        axis.set_ylabel("output")
        axis.set_xlim(*extent)
        scale.axis("off")
    else:
        image = axis.imshow(predictions.T, aspect="auto", interpolation="nearest",
                            cmap="viridis", extent=(*extent, predictions.shape[1] - 0.5, -0.5))
        figure.colorbar(image, cax=scale, label="output")
        target_steps, target_symbols = np.nonzero(targets * counted[:, None])
        axis.scatter(target_steps + 1, target_symbols, marker="x", color="C3",
                     label="target (counted steps)")
        axis.set_ylabel("output unit")
    axis.legend(loc="upper left")
