"""What a run shows on the terminal: a short line per iteration within 120 columns (the full
record with --verbose), "rejected" for a step the line search refused, and a progress bar with
k/N, elapsed time, ETA and the phase under way only when stderr is a terminal."""

from __future__ import annotations

import io
import math

from hypothesis import given
from hypothesis import strategies as st

from arrayhf import cli
from arrayhf.hf import progress
from arrayhf.hf.runlog import RunLog, format_record

# what a run can log: losses >= 0 (or not finite), λ > 0, any ρ, seconds below 12 days
LOSSES = st.one_of(st.none(), st.floats(0, 1e300), st.sampled_from([math.inf, math.nan]))


def record(**values):
    base = {"iteration": 12, "train_loss": 0.0257781, "objective": 0.0258, "test_loss": 0.0256,
            "test_error": 0.0123, "grad_norm": 0.5, "theta_norm": 12.3, "damping": 0.0123,
            "next_damping": 0.02, "rho": 0.812, "rho_numerator": -0.1, "rho_denominator": -0.12,
            "cg_steps": 45, "cg_total": 1234, "cg_stop": "progress", "chosen_iterate": 41,
            "line_search_step": 1.0, "seconds": 2.31, "cg_warm_start_dropped": False}
    return {**base, **values}


@given(train=LOSSES, test=LOSSES, damping=st.floats(1e-300, 1e300),
       rho=st.one_of(st.none(), st.floats(allow_nan=True, allow_infinity=True)),
       seconds=st.floats(0, 1e6), error=st.one_of(st.none(), st.floats(0, 1)),
       iteration=st.integers(1, 99_999), cg=st.integers(0, 9_999),
       step=st.sampled_from([0.0, 0.5, 1.0]))
def test_the_terminal_line_fits_in_120_columns(train, test, damping, rho, seconds, error,
                                              iteration, cg, step):
    line = progress.short_line(record(iteration=iteration, train_loss=train, test_loss=test,
                                      damping=damping, rho=rho, seconds=seconds,
                                      test_error=error, cg_steps=cg, line_search_step=step),
                               99_999)
    assert len(line) <= progress.WIDTH, (len(line), line)


def test_a_rejected_step_says_so_and_the_full_record_stays_in_the_files():
    line = progress.short_line(record(rho=-math.inf, line_search_step=0.0), 50)
    assert "ρ rejected  θ kept" in line and "-inf" not in line and line.endswith("2.31s")
    line = progress.short_line(record(rho=-math.inf, line_search_step=0.5), 50)
    assert "ρ rejected" in line and "θ kept" not in line
    assert line.startswith("iter   12/50  train 0.025778  test 0.0256 (error 1.23%)")
    assert "ρ 0.812" in progress.short_line(record(), 50)
    assert "|g|" in format_record(record()) and "|g|" not in progress.short_line(record(), 50)


def test_the_bar_shows_only_on_a_terminal(tmp_path, monkeypatch):
    for live in (False, True):
        stdout, stderr = io.StringIO(), io.StringIO()
        monkeypatch.setattr("sys.stderr", stderr)
        log = RunLog(tmp_path / str(live), stream=stdout)
        log.terminal.live = live
        log.start_run(0, 3)
        log.start_cg(1)
        log.phase("gradient")
        log.iteration(record(iteration=1))
        log.end_run()
        assert "iter    1/3  train" in stdout.getvalue()
        if live:
            assert "HF iteration" in stderr.getvalue() and "/3" in stderr.getvalue()
            assert "iteration 1: gradient" in stderr.getvalue()
        else:
            assert stderr.getvalue() == ""          # plain output off a terminal
        assert "|g|" in (tmp_path / str(live) / "results").read_text()


def test_verbose_prints_the_full_record(tmp_path, capsys):
    tiny = ["train", "--problem", "addition", "--T", "20", "--hidden", "4", "--batch-size",
            "8", "--train-batches", "1", "--test-batches", "1", "--max-cg", "3",
            "--iterations", "1"]
    assert cli.main([*tiny, "--run-dir", str(tmp_path / "a")]) == 0
    out = capsys.readouterr().out
    assert "generating addition data: 1×8 test sequences of T = 20" in out
    assert "iter    1/1  train" in out and "|g|" not in out
    assert cli.main([*tiny, "--verbose", "--run-dir", str(tmp_path / "b")]) == 0
    assert "|g|" in capsys.readouterr().out
