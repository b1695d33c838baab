"""Every option of every command is checked while the command line is read: a value out of its
range is refused in one line with exit status 2, before any other check or any work (no run
directory is made), and every value in range is accepted. The ranges below are the spec, written
independently of arrayhf.cli.values."""

from __future__ import annotations

import contextlib
import io
import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from arrayhf import cli


def at_least(minimum):
    def accepts(text):
        try:
            return int(text) >= minimum
        except ValueError:
            return False
    return accepts


def number(predicate):
    def accepts(text):
        try:
            value = float(text)
        except ValueError:
            return False
        return math.isfinite(value) and predicate(value)
    return accepts


POSITIVE_INTEGER = at_least(1)
# (command line before the option, option, accepts): every numeric option of every command
OPTIONS = [(["train", "--problem", "addition"], flag, POSITIVE_INTEGER)
           for flag in ("--hidden", "--factors", "--batch-size", "--train-batches",
                        "--test-batches", "--iterations", "--max-cg", "--save-every")]
OPTIONS += [(["demo"], "--iterations", POSITIVE_INTEGER),
            (["train", "--problem", "addition"], "--seed", at_least(0)),
            (["train", "--problem", "addition"], "--damping", number(lambda x: x > 0)),
            (["train", "--problem", "addition"], "--mu", number(lambda x: x >= 0)),
            (["train", "--problem", "addition"], "--threshold", number(lambda x: 0 < x <= 1)),
            (["demo"], "--threshold", number(lambda x: 0 < x <= 1)),
            (["resume", "runs/x"], "--iterations", POSITIVE_INTEGER),
            (["resume", "runs/x"], "--save-every", POSITIVE_INTEGER),
            (["resume", "runs/x"], "--threshold", number(lambda x: 0 < x <= 1)),
            (["train-text", "--stdlib"], "--max-chars", POSITIVE_INTEGER),
            (["train-text", "--stdlib"], "--T", POSITIVE_INTEGER),
            (["train-text", "--stdlib"], "--warmup", at_least(0)),
            (["train-text", "--stdlib"], "--max-vocabulary", at_least(2)),
            (["train-text", "--stdlib"], "--iterations", POSITIVE_INTEGER),
            (["sample", "runs/x"], "--length", POSITIVE_INTEGER),
            (["sample", "runs/x"], "--context", POSITIVE_INTEGER),
            (["sample", "runs/x"], "--seed", at_least(0)),
            (["sample", "runs/x"], "--temperature", number(lambda x: x >= 0)),
            (["plot", "runs/x"], "--sequence", at_least(0))]

VALUES = st.one_of(st.integers(-5, 5).map(str), st.integers(-10**9, 10**9).map(str),
                   st.floats(allow_nan=True, allow_infinity=True).map(repr),
                   st.sampled_from(["", " ", "1e3", "0.5", "1.0", "-0", "x", "3x"]),
                   st.text(max_size=4))


@settings(max_examples=300, deadline=None)
@given(option=st.sampled_from(OPTIONS), value=VALUES)
def test_every_value_is_checked_while_the_command_line_is_read(option, value, tmp_path_factory):
    before, flag, accepts = option
    argv = [*before, f"{flag}={value}"]
    if accepts(value):
        args = cli.build_parser().parse_args(argv)
        assert getattr(args, flag[2:].replace("-", "_")) is not None
        return
    run_dir = tmp_path_factory.mktemp("refused") / "run"
    if before[0] in ("train", "demo", "train-text"):
        argv += ["--run-dir", str(run_dir)]
    stderr = io.StringIO()
    with contextlib.redirect_stderr(stderr):
        assert cli.main(argv) == 2
    err = stderr.getvalue()
    assert len(err.strip().splitlines()) == 1 and f"argument {flag}" in err, err
    assert "Traceback" not in err
    assert not run_dir.exists()


@pytest.mark.parametrize("argv, message", [
    (["train", "--problem", "xor", "--T", "5"], "xor needs T >= 20, got T=5"),
    (["train-text", "--stdlib", "--T", "10", "--warmup", "10"], "expected --warmup below --T"),
    (["train", "--problem", "addition", "--backend", "tensorflow"], "unknown backend"),
    (["train", "--problem", "addition", "--dtype", "float16"], "argument --dtype"),
    (["train", "--problem", "addition", "--model", "transformer"], "argument --model"),
    (["predict", "runs/x", "--inputs", "inputs.txt"], "expected a .npy file"),
])
def test_settings_that_must_agree_are_checked_before_any_work(argv, message, tmp_path, capsys):
    run_dir = tmp_path / "run"
    if argv[0] != "predict":
        argv = [*argv, "--run-dir", str(run_dir)]
    assert cli.main(argv) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1, err
    assert not run_dir.exists()


def test_a_bad_value_is_reported_before_an_existing_run_dir(tmp_path, capsys):
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / "checkpoint.npz").write_bytes(b"")
    assert cli.main(["train", "--problem", "addition", "--batch-size", "-5",
                     "--run-dir", str(run_dir)]) == 2
    assert "argument --batch-size" in capsys.readouterr().err


def test_help_has_a_default_for_every_option_and_no_markup(capsys):
    parser = cli.build_parser()
    commands = parser._subparsers._group_actions[0].choices   # the subcommand parsers
    for name, command in commands.items():
        for action in command._actions:
            if action.option_strings and action.dest not in ("help", "threads"):
                assert action.help, (name, action.option_strings)
                if action.nargs != 0 and not action.required:
                    assert "default" in action.help, (name, action.option_strings, action.help)
    assert "``" not in parser.format_help()
    assert cli.main(["--version"]) == 0
    assert capsys.readouterr().out.startswith("arrayhf ")
