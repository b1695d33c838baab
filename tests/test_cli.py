"""The command line as a user meets it: train a pathological problem, resume it, plot it, and the
errors for bad requests. Runs on the backend under test."""

from __future__ import annotations

import json
import os

import numpy
import pytest

from arrayhf import backend, checkpoint, cli
from arrayhf.cli import models, pathological, rundir, runs
from arrayhf.cli import text as text_commands

from helpers import other_backend

TINY = ["--T", "20", "--hidden", "8", "--batch-size", "16", "--train-batches", "2",
        "--test-batches", "1", "--max-cg", "10"]


def backend_options(xp, device):
    options = ["--backend", backend.name_of(xp)]
    if backend.name_of(xp) == "array_api_strict" and device != xp.Device("CPU_DEVICE"):
        options += ["--device", str(device).split("'")[1]]
    return options


def test_train_resume_and_plot(xp, device, tmp_path, capsys):
    run_dir = tmp_path / "run"
    assert cli.main(["train", "--problem", "addition", *TINY, "--iterations", "2",
                     "--run-dir", str(run_dir), *backend_options(xp, device)]) == 0
    out = capsys.readouterr().out
    assert "iter    2" in out
    # the verdict line: "SOLVED" or "NOT SOLVED" as the logged test error says, with the numbers
    last = json.loads((run_dir / "metrics.jsonl").read_text().splitlines()[-1])
    run_info = json.loads((run_dir / "run.json").read_text())
    verdicts = [line for line in out.splitlines() if "SOLVED: " in line]
    assert len(verdicts) == 1, verdicts
    assert verdicts[0].startswith(
        "SOLVED: addition, T = 20 at HF iteration 2, "
        if last["test_error"] < run_info["threshold"]
        else "NOT SOLVED: addition, T = 20 after HF iteration 2, "), (verdicts[0], last)
    assert f": {100 * last['test_error']:.2f}% of test sequences wrong" in verdicts[0]
    assert run_info["problem"] == "addition"
    assert (run_dir / "checkpoint.npz").exists()

    assert cli.main(["train", "--problem", "addition", *TINY, "--run-dir", str(run_dir)]) == 2
    assert "already holds a run" in capsys.readouterr().err

    assert cli.main(["resume", str(run_dir), "--iterations", "3"]) == 0
    out = capsys.readouterr().out
    assert "resumed from the checkpoint of iteration 2" in out and "iter    3" in out
    lines = (run_dir / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(line)["iteration"] for line in lines] == [1, 2, 3]

    assert cli.main(["plot", str(run_dir)]) == 0
    for name in ("curves.png", "hidden_states.png"):
        assert (run_dir / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert (run_dir / name).stat().st_size > 10_000
    first_picture = (run_dir / "hidden_states.png").read_bytes()
    capsys.readouterr()

    # the last test sequence (of 16) is another picture; one past it, or a negative one (which
    # indexing would count from the end, under a title naming the negative number), is refused
    # in one line, before any picture is drawn
    assert cli.main(["plot", str(run_dir), "--sequence", "15"]) == 0
    assert (run_dir / "hidden_states.png").read_bytes() != first_picture
    for sequence, message in (("16", "expected --sequence in 0..15 (the test sequences), got 16"),
                              ("-1", "argument --sequence: expected an integer >= 0, got '-1'")):
        for name in ("curves.png", "hidden_states.png"):
            (run_dir / name).unlink(missing_ok=True)
        assert cli.main(["plot", str(run_dir), "--sequence", sequence]) == 2
        err = capsys.readouterr().err
        assert message in err and len(err.strip().splitlines()) == 1, err
        assert not any((run_dir / name).exists() for name in ("curves.png", "hidden_states.png"))


@pytest.mark.parametrize("problem", ["xor", "temporal_order", "random_permutation",
                                     "memorization"])
def test_every_problem_runs_from_the_command_line(xp, device, tmp_path, capsys, problem):
    assert cli.main(["train", "--problem", problem, *TINY, "--iterations", "1",
                     "--run-dir", str(tmp_path / problem), *backend_options(xp, device)]) == 0
    assert f"{problem}, T = 20" in capsys.readouterr().out


@pytest.mark.parametrize("model", models.MODELS)
def test_every_model_trains_and_resumes_from_the_command_line(xp, device, tmp_path, capsys,
                                                               model):
    run_dir = tmp_path / model
    assert cli.main(["train", "--problem", "addition", *TINY, "--iterations", "1", "--model",
                     model, "--run-dir", str(run_dir), *backend_options(xp, device)]) == 0
    assert f"addition: T = 20, {model.upper()} of 8 hidden units" in capsys.readouterr().out
    assert json.loads((run_dir / "run.json").read_text())["model"] == model
    _, meta, _ = checkpoint.read_latest(run_dir / checkpoint.CHECKPOINT_NAME)
    assert meta["model"]["class"] == type(models.pathological_model(
        model, 2, 1, "linear", hidden=8, factors=None, biases=False)).__name__
    assert cli.main(["resume", str(run_dir), "--iterations", "2"]) == 0
    assert "resumed from the checkpoint of iteration 1" in capsys.readouterr().out


def test_run_description_leaves_out_later_settings_at_their_old_values():
    """Checkpoints made before --model existed recorded no model: the tanh RNN's run description
    must stay what it was, so that they resume without --force; any other model is recorded."""
    assert not {"model", "factors"} & set(runs.RunSettings().run_info())
    assert runs.RunSettings(model="mrnn", factors=5).run_info()["model"] == "mrnn"
    assert runs.RunSettings(model="mrnn", factors=5).run_info()["factors"] == 5


def test_an_older_run_json_resumes_with_the_settings_it_was_made_with(tmp_path):
    """A run.json written before --backtracking and --score-batches existed lacks them: loading
    it gives the values every run had then (Martens' backtracking, every batch scoring), and
    its run description is unchanged, so that its checkpoint resumes without --force."""
    old = runs.RunSettings(problem="xor", T=20)
    saved = {k: v for k, v in old.to_json().items() if k not in ("backtracking",
                                                                  "score_batches")}
    (tmp_path / runs.RUN_FILE).write_text(json.dumps(saved))
    loaded = runs.load_settings(tmp_path)
    assert (loaded.backtracking, loaded.score_batches) == ("martens", None)
    assert loaded.run_info() == old.run_info()
    assert not {"backtracking", "score_batches"} & set(old.run_info())
    assert runs.RunSettings(score_batches=3).run_info()["score_batches"] == 3


def test_long_runs_on_a_cpu_get_cpu_sized_batches_and_say_so(capsys):
    """At T >= 100 without a GPU, ``arrayhf train`` and ``arrayhf demo`` take MS11's 10,000
    gradient sequences as 100 batches of 100, 10 of them scoring, and name them on the first
    line; an option given wins, and a GPU or a shorter T gets none of it."""
    def settings(*argv):
        args = cli.build_parser().parse_args(["train", "--problem", "xor", *argv])
        return pathological.train_settings(args)

    long = settings("--T", "100")
    assert (long.batch_size, long.train_batches, long.score_batches, long.dtype) == (
        100, 100, 10, "float32")
    first = capsys.readouterr().out.splitlines()[0]
    assert first.startswith("CPU-sized settings at T >= 100 without a GPU: --batch-size 100, "
                            "--train-batches 100, --score-batches 10, --dtype float32 (10,000 "
                            "gradient")
    given = settings("--T", "100", "--batch-size", "50")
    assert (given.batch_size, given.train_batches) == (50, 100)
    assert "--batch-size" not in capsys.readouterr().out
    for other in (settings("--T", "99"), settings("--T", "100", "--device", "cuda")):
        assert (other.batch_size, other.train_batches, other.score_batches, other.dtype) == (
            1000, 10, None, "float64")
    assert "CPU-sized" not in capsys.readouterr().out
    demo = pathological._settings(cli.build_parser().parse_args(["demo", "--T", "100"]),
                                  problem="multiplication")
    assert (demo.batch_size, demo.train_batches, demo.T) == (100, 100, 100)


def test_score_batches_reach_the_optimizer_and_are_checked(tmp_path, capsys):
    """--score-batches N: backtracking and the line search are judged on the first N training
    batches; more than there are is refused before any work (status 2, nothing created)."""
    settings = runs.RunSettings(problem="xor", T=20, hidden=4, batch_size=8, train_batches=3,
                                test_batches=1, score_batches=2)
    _, dataset, optimizer = runs.build(settings, None, progress=False)
    assert optimizer.config.backtrack_batches == tuple(dataset.train_batches[:2])
    assert optimizer.config.line_search_batches == tuple(dataset.train_batches[:2])
    run_dir = tmp_path / "refused"
    assert cli.main(["train", "--problem", "xor", *TINY, "--score-batches", "3", "--run-dir",
                     str(run_dir)]) == 2
    assert "expected --score-batches at most --train-batches, got 3 > 2" in \
        capsys.readouterr().err
    assert not run_dir.exists()


def test_bad_requests_get_clear_messages(tmp_path, capsys):
    assert cli.main(["train", "--problem", "xor", "--T", "5", "--run-dir",
                     str(tmp_path / "x")]) == 2
    assert "xor needs T >= 20" in capsys.readouterr().err
    assert cli.main(["train", "--problem", "addition", "--backend", "tensorflow",
                     "--run-dir", str(tmp_path / "y")]) == 2
    assert "unknown backend 'tensorflow'" in capsys.readouterr().err
    assert cli.main(["resume", str(tmp_path / "nothing")]) == 2
    assert "run.json" in capsys.readouterr().err
    assert cli.main(["train", "--problem", "sorting"]) == 2
    assert "argument --problem: expected one of addition, " in capsys.readouterr().err


@pytest.mark.parametrize("model", models.MODELS)
def test_train_text_then_sample_on_another_backend(xp, device, tmp_path, capsys, model):
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("the cat sat on the mat. " * 200, encoding="utf-8")
    run_dir = tmp_path / "text"
    factors = ["--factors", "12"] if model == "mrnn" else []   # refused for the others
    assert cli.main(["train-text", str(corpus), "--model", model, "--T", "20", "--hidden", "12",
                     *factors,
                     "--batch-size", "10", "--train-batches", "2", "--test-batches", "1",
                     "--warmup", "5", "--iterations", "2", "--max-cg", "10",
                     "--run-dir", str(run_dir), *backend_options(xp, device)]) == 0
    out = capsys.readouterr().out
    assert "bits per character: train" in out and "held-out bits per character" in out
    other = backend.name_of(other_backend(xp))   # helpers.other_backend: never the session's
    assert other != backend.name_of(xp)
    for sampling_backend in (other, backend.name_of(xp)):
        assert cli.main(["sample", str(run_dir), "--length", "40", "--prime", "the ",
                         "--backend", sampling_backend]) == 0
        text = capsys.readouterr().out.splitlines()[-1]
        assert text.startswith("the ") and len(text) == 44
        assert set(text) <= set("the cat sat on the mat. ")


@pytest.mark.parametrize("command", [["train", "--problem", "addition"],
                                     ["demo"], ["train-text", "--stdlib"]])
@pytest.mark.parametrize("model", [m for m in models.MODELS if m != "mrnn"])
def test_factors_is_refused_for_a_model_it_does_not_size(tmp_path, capsys, command, model):
    run_dir = tmp_path / "run"
    assert cli.main([*command, "--model", model, "--factors", "10",
                     "--run-dir", str(run_dir)]) == 2
    error = capsys.readouterr().err
    assert f"--factors sizes mrnn only, not --model {model}" in error
    assert "Traceback" not in error and not run_dir.exists()


def test_sample_at_temperature_zero_is_greedy_and_never_writes_the_unknown_symbol():
    rng = numpy.random.default_rng(0)
    logits = numpy.array([9.0, 1.0, 3.0, 2.0])            # id 0, the unknown symbol, the largest
    assert text_commands._next_id(logits, 0.0, rng) == 2
    draws = {text_commands._next_id(logits, 1.0, rng) for _ in range(200)}
    assert draws == {1, 2, 3}                          # every character, never id 0


def test_sample_greedy_and_a_prime_outside_the_vocabulary(tmp_path, capsys):
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("the cat sat on the mat. " * 200, encoding="utf-8")
    run_dir = tmp_path / "text"
    assert cli.main(["train-text", str(corpus), "--model", "rnn", "--T", "20", "--hidden", "8",
                     "--batch-size", "10", "--train-batches", "2", "--test-batches", "1",
                     "--warmup", "5", "--iterations", "1", "--max-cg", "5",
                     "--run-dir", str(run_dir)]) == 0
    capsys.readouterr()
    texts = []
    for seed in ("0", "1"):
        assert cli.main(["sample", str(run_dir), "--length", "30", "--prime", "the ",
                         "--temperature", "0", "--seed", seed]) == 0
        captured = capsys.readouterr()
        assert "note:" not in captured.err
        texts.append(captured.out.splitlines()[-1])
    assert texts[0] == texts[1] and len(texts[0]) == 34   # greedy: the seed draws nothing
    assert cli.main(["sample", str(run_dir), "--length", "5", "--prime", "théâ"]) == 0
    captured = capsys.readouterr()
    assert ("2 character(s) the run's vocabulary lacks ('â', 'é'): they are fed as the "
            "unknown symbol") in captured.err
    assert captured.out.splitlines()[-1].startswith("théâ")


def test_resume_trains_a_solved_run_on_only_when_asked(tmp_path, capsys):
    run_dir = tmp_path / "run"
    assert cli.main(["train", "--problem", "addition", *TINY, "--iterations", "8",
                     "--threshold", "1", "--run-dir", str(run_dir)]) == 0

    def iterations():
        return [json.loads(line)["iteration"]
                for line in (run_dir / "metrics.jsonl").read_text().splitlines()]

    solved_at = iterations()[-1]
    assert solved_at < 8 and iterations() == list(range(1, solved_at + 1))
    assert f"SOLVED: addition, T = 20 at HF iteration {solved_at}," in capsys.readouterr().out

    assert cli.main(["resume", str(run_dir)]) == 0
    out = capsys.readouterr().out
    assert "is solved already" in out and "--threshold X" in out
    assert iterations()[-1] == solved_at

    assert cli.main(["resume", str(run_dir), "--iterations", str(solved_at + 1)]) == 0
    out = capsys.readouterr().out
    assert f"training on to iteration {solved_at + 1}" in out
    assert iterations() == list(range(1, solved_at + 2))
    # the verdict counts the whole run's time, not only this process's
    seconds = sum(json.loads(line)["seconds"]
                  for line in (run_dir / "metrics.jsonl").read_text().splitlines())
    assert f"CG steps, {seconds:.0f} s on numpy" in out

    total = solved_at + 2
    assert cli.main(["resume", str(run_dir), "--threshold", "1e-9", "--iterations",
                     str(total)]) == 0
    out = capsys.readouterr().out
    assert "stop when test error < 1e-07%" in out and iterations()[-1] == total
    assert f"NOT SOLVED: addition, T = 20 after HF iteration {total}" in out
    assert json.loads((run_dir / "run.json").read_text())["threshold"] == 1e-9
    # the new threshold is the run's now: resuming again needs no --force
    assert cli.main(["resume", str(run_dir), "--iterations", str(total)]) == 0
    assert f"is at iteration {total} already" in capsys.readouterr().out


def test_a_damaged_checkpoint_is_named_moved_aside_and_the_logs_cut_to_the_one_read(tmp_path,
                                                                                    capsys):
    run_dir = tmp_path / "run"
    assert cli.main(["train", "--problem", "addition", *TINY, "--iterations", "3",
                     "--save-every", "2", "--threshold", "1e-9", "--run-dir", str(run_dir)]) == 0
    latest = run_dir / "checkpoint.npz"
    damaged = latest.read_bytes()[:100]                     # a truncated copy, a full disk
    latest.write_bytes(damaged)
    capsys.readouterr()

    assert cli.main(["plot", str(run_dir)]) == 0
    err = capsys.readouterr().err
    assert f"{latest}" in err and "reading the checkpoint before it" in err, err
    assert "(iteration 2)" in err

    assert cli.main(["resume", str(run_dir), "--iterations", "4"]) == 0
    captured = capsys.readouterr()
    assert "reading the checkpoint before it" in captured.err
    assert "moved the damaged checkpoint.npz aside to checkpoint.damaged-1.npz" in captured.err
    assert (run_dir / "checkpoint.damaged-1.npz").read_bytes() == damaged
    assert "resumed from the checkpoint of iteration 2" in captured.out
    _, meta, used = checkpoint.read_latest(latest)
    assert used == latest and meta["iteration"] == 4
    # the damaged file was never rotated into the place of the good one: both load
    _, previous = checkpoint.read_arrays(checkpoint.previous_path(latest))
    assert previous["iteration"] == 4
    for name in ("results", "detailed_results"):
        records = [int(line.split()[1]) for line in (run_dir / name).read_text().splitlines()
                   if line.startswith("iter ")]
        assert records == [1, 2, 3, 4], (name, records)
    assert [json.loads(line)["iteration"]
            for line in (run_dir / "metrics.jsonl").read_text().splitlines()] == [1, 2, 3, 4]


def test_messages_name_the_path_the_user_gave(tmp_path, capsys):
    (tmp_path / "empty.npy").write_bytes(b"")
    assert cli.main(["predict", str(tmp_path / "nope"), "--inputs",
                     str(tmp_path / "empty.npy")]) == 2
    err = capsys.readouterr().err
    assert "empty.npy: not a .npy file" in err and len(err.splitlines()) == 1
    (tmp_path / "text.npy").write_text("1 2 3\n")          # a text file under a .npy name
    assert cli.main(["predict", str(tmp_path / "nope"), "--inputs",
                     str(tmp_path / "text.npy")]) == 2
    err = capsys.readouterr().err
    assert "text.npy: not a .npy file" in err and "pickle" not in err
    numpy.save(tmp_path / "x.npy", numpy.zeros((3, 2, 2)))
    assert cli.main(["predict", str(tmp_path / "nope"), "--inputs", str(tmp_path / "x.npy")]) == 2
    err = capsys.readouterr().err
    assert f"{tmp_path / 'nope'}: no such run directory or checkpoint file" in err, err
    assert "prev" not in err


def test_overwrite_starts_a_run_over(tmp_path, capsys):
    run_dir = tmp_path / "run"
    train = ["train", "--problem", "addition", *TINY, "--iterations", "2", "--run-dir",
             str(run_dir)]
    assert cli.main(train) == 0
    (run_dir / "notes.txt").write_text("the user's own file")
    assert cli.main(train) == 2
    assert "start it over with --overwrite" in capsys.readouterr().err
    assert cli.main([*train[:-4], "--iterations", "1", "--overwrite", *train[-2:]]) == 0
    err = capsys.readouterr().err
    assert f"starting {run_dir} over: removed run.json, metrics.jsonl" in err, err
    assert [json.loads(line)["iteration"]
            for line in (run_dir / "metrics.jsonl").read_text().splitlines()] == [1]
    assert (run_dir / "notes.txt").read_text() == "the user's own file"


def test_info_tells_what_a_run_directory_holds(tmp_path, capsys):
    run_dir = tmp_path / "run"
    assert cli.main(["train", "--problem", "addition", *TINY, "--iterations", "2",
                     "--threshold", "1", "--run-dir", str(run_dir)]) == 0
    last = json.loads((run_dir / "metrics.jsonl").read_text().splitlines()[-1])
    capsys.readouterr()
    assert cli.main(["info", str(run_dir)]) == 0
    out = capsys.readouterr().out
    assert f"{run_dir}: pathological run (addition, T = 20, rnn of 8 hidden units)" in out
    assert f"progress: {last['iteration']} of 2 HF iterations, {last['cg_total']} CG steps" in out
    error = 100 * last["test_error"]
    assert f"test error: last {error:.2f}% (iteration {last['iteration']})" in out
    assert f"checkpoint.npz: iteration {last['iteration']}," in out
    assert "lock: free" in out

    (run_dir / "checkpoint.prev.npz").write_bytes(b"torn")
    rundir.lock(run_dir)      # held by this process, seen through another open file
    assert cli.main(["info", str(run_dir)]) == 0
    out = capsys.readouterr().out
    assert "checkpoint.prev.npz: damaged (" in out
    assert f"lock: in use by process {os.getpid()}" in out


def test_predict_refuses_to_overwrite_without_force(tmp_path, capsys):
    run_dir = tmp_path / "run"
    assert cli.main(["train", "--problem", "addition", *TINY, "--iterations", "1",
                     "--run-dir", str(run_dir)]) == 0
    inputs = tmp_path / "x.npy"
    numpy.save(inputs, numpy.zeros((20, 3, 2)))
    predict = ["predict", str(run_dir), "--inputs", str(inputs)]
    assert cli.main(predict) == 0
    written = tmp_path / "x.predictions.npy"
    assert numpy.load(written).shape == (20, 3, 1)
    assert "inputs read time-major (T = 20 steps of 3 sequences)" in capsys.readouterr().out
    written.write_bytes(b"the user's file")
    assert cli.main(predict) == 2
    assert "x.predictions.npy exists: --force overwrites it" in capsys.readouterr().err
    assert written.read_bytes() == b"the user's file"
    assert cli.main([*predict, "--force"]) == 0
    assert numpy.load(written).shape == (20, 3, 1)
