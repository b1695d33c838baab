"""The pictures say what they show: integer HF iterations, the success threshold on the error
panel, ρ, ‖g‖ and seconds per iteration, bits per character with the unigram entropy for text,
panels whose time steps line up, and curves drawn from the logs when no checkpoint loads."""

from __future__ import annotations

import math

import matplotlib
import numpy as np
import pytest

matplotlib.use("Agg")
import matplotlib.figure  # noqa: E402
import matplotlib.pyplot  # noqa: E402

from arrayhf import cli, plots  # noqa: E402

pytestmark = pytest.mark.only_backend("numpy")


def records(n=5):
    return [{"iteration": k, "train_loss": 1.0 / k, "test_loss": 1.2 / k, "test_error": 0.5 / k,
             "damping": 0.01 * k, "rho": -math.inf if k == 2 else 0.5, "grad_norm": 1.0 / k,
             "theta_norm": 3.0 + k, "cg_steps": 10 * k, "seconds": 0.1 * k}
            for k in range(1, n + 1)]


@pytest.fixture
def drawn(monkeypatch):
    """The figures the plot functions save, kept open for inspection."""
    figures = []
    monkeypatch.setattr(matplotlib.figure.Figure, "savefig",
                        lambda figure, *args, **kwargs: figures.append(figure))
    monkeypatch.setattr(matplotlib.pyplot, "close", lambda figure=None: None)
    return figures


def by_label(figure):
    return {axis.get_ylabel(): axis for axis in figure.axes}


def test_curves_of_a_pathological_run(drawn, tmp_path):
    plots.plot_curves(records(), tmp_path / "c.png", title="t", threshold=0.01)
    axes = by_label(drawn[0])
    for label in ("loss", "test zero-one error (%)", "damping λ", "‖g‖", "|θ|", "CG steps",
                  "seconds per iteration"):
        assert label in axes, sorted(axes)
    rho = next(axis for label, axis in axes.items() if label.startswith("ρ"))
    assert any(line.get_ydata()[0] == pytest.approx(1.0) for line in
               axes["test zero-one error (%)"].get_lines())          # the 1% threshold
    assert "rejected (ρ = −∞)" in [text.get_text() for text in rho.get_legend().get_texts()]
    ticks = axes["CG steps"].xaxis.get_major_locator().tick_values(1, 5)
    assert all(float(tick).is_integer() for tick in ticks)


def test_curves_of_a_text_run_are_in_bits_with_the_entropy(drawn, tmp_path):
    plots.plot_curves(records(), tmp_path / "c.png", entropy_bits=4.5)
    axis = by_label(drawn[0])["bits per character"]
    first = axis.get_lines()[0].get_ydata()[0]
    assert first == pytest.approx(1.0 / math.log(2))                 # nats → bits
    assert any(np.allclose(line.get_ydata(), 4.5) for line in axis.get_lines())


def test_sequence_panels_line_up(drawn, tmp_path):
    rng = np.random.default_rng(0)
    plots.plot_sequence(rng.random((12, 2)), np.tanh(rng.standard_normal((12, 5))),
                        rng.random((12, 3)), np.eye(3)[rng.integers(0, 3, 12)],
                        np.r_[np.zeros(11), 1.0], tmp_path / "s.png")
    figure = drawn[0]
    figure.canvas.draw()
    panels = [axis for axis in figure.axes if axis.get_ylabel() in
              ("input channel", "hidden unit", "output unit")]
    assert len(panels) == 3
    lefts = {round(axis.get_position().x0, 6) for axis in panels}
    rights = {round(axis.get_position().x1, 6) for axis in panels}
    assert len(lefts) == len(rights) == 1                              # same width, same place
    assert all(axis.get_xlim() == pytest.approx((0.5, 12.5)) for axis in panels)
    assert {axis.get_ylabel() for axis in figure.axes} >= {"input value", "hidden state",
                                                            "output"}


def test_plot_draws_the_curves_when_no_checkpoint_loads(tmp_path, capsys):
    run_dir = tmp_path / "run"
    assert cli.main(["train", "--problem", "addition", "--T", "20", "--hidden", "4",
                     "--batch-size", "8", "--train-batches", "1", "--test-batches", "1",
                     "--max-cg", "3", "--iterations", "2", "--run-dir", str(run_dir)]) == 0
    for name in ("checkpoint.npz", "checkpoint.prev.npz"):
        (run_dir / name).write_bytes(b"torn")
    capsys.readouterr()
    assert cli.main(["plot", str(run_dir)]) == 1
    err = capsys.readouterr().err
    assert "curves.png from the logs; hidden_states.png not drawn" in err
    assert (run_dir / "curves.png").stat().st_size > 10_000
    assert not (run_dir / "hidden_states.png").exists()
