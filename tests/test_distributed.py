"""HF on several processes (arrayhf/distributed.py, data/sharded.py; derivations/cg-and-damping.md,
(H6)): two gloo processes on 127.0.0.1 compute one process's loss, gradient and G v on the whole
batches, then iterates that differ from one process's only as much as the order of summation
makes them differ, measured here; ``torchrun -m arrayhf train`` logs and checkpoints once and
resumes on another number of processes; a dead or hung process stops the others.

The tests that start processes run in the numpy session (on numpy and torch arrays) and, for
JAX's copy path, in the JAX session; the communicator's conversions and the sharding are checked
in every session, in this process.
"""

from __future__ import annotations

import json
import os
import pathlib
import signal
import socket
import subprocess
import sys
import time

import numpy as np
import pytest
import torch.distributed

from arrayhf import backend, checkpoint, distributed, threads
from arrayhf.data.batch import Batch
from arrayhf.data.sharded import ShardedDataset, rows_of

import distributed_worker as worker
from helpers import host, relative_error

ROOT = pathlib.Path(__file__).resolve().parents[1]
WORKER = pathlib.Path(worker.__file__)
# a run that never stops by itself (threshold 1e-9): it is stopped by --iterations or a kill
RUN = ["--problem", "addition", "--T", "10", "--hidden", "16", "--batch-size", "60",
       "--train-batches", "2", "--test-batches", "1", "--max-cg", "30", "--threshold", "1e-9"]


# -- starting processes --------------------------------------------------------------------------
def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def environment(**extra) -> dict:
    """One BLAS thread a process, as torchrun's, and this checkout's arrayhf."""
    path = os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))
    return {**os.environ, "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1",
            "MKL_NUM_THREADS": "1", "PYTHONPATH": path, **extra}


def start(arguments, world_size, log: pathlib.Path, **extra) -> list[subprocess.Popen]:
    """``world_size`` processes of ``python ARGUMENTS`` in the environment torchrun sets."""
    port = str(free_port())
    processes = []
    for rank in range(world_size):
        env = environment(MASTER_ADDR="127.0.0.1", MASTER_PORT=port, RANK=str(rank),
                          LOCAL_RANK=str(rank), WORLD_SIZE=str(world_size),
                          LOCAL_WORLD_SIZE=str(world_size), **extra)
        with open(log.with_suffix(f".{rank}"), "wb") as out:
            processes.append(subprocess.Popen([sys.executable, *arguments], stdout=out,
                                              stderr=subprocess.STDOUT, env=env))
    return processes


def wait_all(processes, timeout=240.0) -> list[int]:
    return [process.wait(timeout=timeout) for process in processes]


def torchrun(world_size, *arguments) -> list[str]:
    return [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", str(world_size),
            "--master-addr", "127.0.0.1", "--master-port", str(free_port()), *arguments]


def checkpoint_iteration(run_dir: pathlib.Path) -> int:
    try:
        return checkpoint.read_latest(run_dir / checkpoint.CHECKPOINT_NAME)[1]["iteration"]
    except (checkpoint.CheckpointError, OSError, KeyError):
        return -1


def wait_until(condition, what, deadline=120.0) -> None:
    give_up = time.monotonic() + deadline
    while not condition():
        assert time.monotonic() < give_up, f"waited {deadline} s for {what}"
        time.sleep(0.01)


def launched_numerics(case, tmp_path):
    """The worker's case on two processes: (rank 0's arrays, rank 0's records); both ranks'
    agree."""
    log = tmp_path / "log"
    codes = wait_all(start([str(WORKER), case, str(tmp_path)], 2, log))
    assert codes == [0, 0], [log.with_suffix(f".{r}").read_text()[-3000:] for r in (0, 1)]
    arrays = [np.load(tmp_path / f"{case}-{rank}.npz") for rank in (0, 1)]
    records = [json.loads((tmp_path / f"{case}-{rank}.json").read_text()) for rank in (0, 1)]
    for key in arrays[0].files:   # the same numbers on every process, bit for bit
        np.testing.assert_array_equal(arrays[0][key], arrays[1][key])
    for run in records[0]:
        for mine, other in zip(records[0][run], records[1][run]):
            assert {k: v for k, v in mine.items() if k not in ("seconds", "phase_seconds")} == \
                   {k: v for k, v in other.items() if k not in ("seconds", "phase_seconds")}
    return arrays[0], records[0]


def compare_products(shared, alone, names):
    """f, g and G v on two processes against one process's on the whole batches: ≤ 1e-12."""
    for key in names:
        assert relative_error(shared[key], alone[key]) <= 1e-12, (key, relative_error(
            shared[key], alone[key]))


def compare_fnn_trajectory(shared, alone):
    """The FNN's HF iterations (5; 1 on JAX): losses, λ and ρ to 1e-8, the same CG steps."""
    assert len(shared) == len(alone) > 0
    for mine, one in zip(shared, alone):
        for key in ("train_loss", "test_loss", "test_error", "damping", "rho"):
            assert abs(mine[key] - one[key]) <= 1e-8 * abs(one[key]), (key, mine, one)
        assert mine["cg_steps"] == one["cg_steps"]
        assert mine["processes"] == 2 and one["processes"] == 1


# -- two processes against one -------------------------------------------------------------------
@pytest.fixture(scope="module")
def numerics(tmp_path_factory):
    """The worker's products and trajectories on two gloo processes, and on this one alone."""
    shared = launched_numerics("numerics", tmp_path_factory.mktemp("numerics"))
    alone = worker.numerics(distributed.SingleProcess())
    return shared, alone


@pytest.mark.only_backend("numpy")
@pytest.mark.parametrize("name", ["numpy", "torch"])
def test_first_loss_gradient_and_product_equal_one_process(numerics, name):
    (shared, _), (alone, _) = numerics
    keys = [f"{name}-fnn-{k}" for k in ("f", "g", "Gv")] + [
        f"{name}-{model}-{k}" for model in ("xor", "text") for k in ("f", "g", "Gv", "GSv")]
    compare_products(shared, alone, keys)


@pytest.mark.only_backend("numpy")
@pytest.mark.parametrize("name", ["numpy", "torch"])
def test_an_fnn_trajectory_equals_one_process_to_1e8(numerics, name):
    (_, shared), (_, alone) = numerics
    compare_fnn_trajectory(shared[f"{name}-fnn"], alone[f"{name}-fnn"])


@pytest.mark.only_backend("numpy")
def test_iterates_differ_from_one_process_only_as_summation_order_does(numerics):
    """The floor: one process on numpy against one on torch, the same run (other kernels, other
    orders of summation), its largest relative difference up to each iteration, and at least
    1e-14 (a few roundings of a sum). Two processes differ from one by at most 10 × that floor
    (measured: up to 1.1 ×), on both backends, in the train loss and ‖θ‖; the first iteration
    takes as many CG steps and gives the same test error."""
    (_, shared), (_, alone) = numerics
    for model in ("fnn", "xor", "text"):
        reference, other = alone[f"numpy-{model}"], alone[f"torch-{model}"]
        for name in ("numpy", "torch"):   # and the test error, weighted by each shard's count
            first = shared[f"{name}-{model}"][0]
            assert first["cg_steps"] == alone[f"{name}-{model}"][0]["cg_steps"]
            assert abs(first["test_error"] - alone[f"{name}-{model}"][0]["test_error"]) <= 1e-12
        for key in ("train_loss", "theta_norm"):
            floor = 1e-14
            for t, (one, two) in enumerate(zip(reference, other)):
                floor = max(floor, abs(one[key] - two[key]) / abs(one[key]))
                for name in ("numpy", "torch"):
                    tested, alone_run = shared[f"{name}-{model}"][t], alone[f"{name}-{model}"][t]
                    difference = abs(tested[key] - alone_run[key]) / abs(alone_run[key])
                    print(f"{model} {key} iteration {t + 1} {name}: two processes differ by "
                          f"{difference:.2e}, the floor is {floor:.2e}")
                    assert difference <= 10 * floor, (model, key, t + 1, name, difference, floor)


@pytest.mark.only_backend("jax")
def test_jax_arrays_go_through_a_copy_and_give_one_process_numbers(tmp_path):
    shared_arrays, shared_records = launched_numerics("jax", tmp_path)
    alone_arrays, alone_records = worker.CASES["jax"](distributed.SingleProcess())
    compare_products(shared_arrays, alone_arrays, ["jax-fnn-f", "jax-fnn-g", "jax-fnn-Gv"])
    compare_fnn_trajectory(shared_records["jax-fnn"], alone_records["jax-fnn"])


# -- the command line under torchrun, a dead process ---------------------------------------------
def logged(run_dir: pathlib.Path) -> list[int]:
    lines = (run_dir / "metrics.jsonl").read_text().splitlines()
    return [json.loads(line)["iteration"] for line in lines]


@pytest.mark.only_backend("numpy")
def test_torchrun_train_logs_once_and_resumes_on_one_process_after_a_kill(tmp_path):
    """2 processes under torchrun, one SIGKILLed after the second checkpoint: torchrun stops the
    other, and ``arrayhf resume`` goes on with one process; every iteration is logged once."""
    run_dir, log = tmp_path / "run", tmp_path / "log"
    with open(log, "wb") as out:
        run = subprocess.Popen(torchrun(2, "-m", "arrayhf", "train", *RUN, "--iterations",
                                        "1000", "--save-every", "1", "--run-dir", str(run_dir)),
                               stdout=out, stderr=subprocess.STDOUT, env=environment())
    wait_until(lambda: checkpoint_iteration(run_dir) >= 2 or run.poll() is not None,
               "the second checkpoint")
    children = pathlib.Path(f"/proc/{run.pid}/task/{run.pid}/children").read_text().split()
    assert len(children) == 2, (children, log.read_text()[-3000:])
    os.kill(int(children[-1]), signal.SIGKILL)
    killed = time.monotonic()
    assert run.wait(timeout=60) != 0
    assert time.monotonic() - killed < 60
    output = log.read_text()
    assert "HF: iterations 1..1000" in output and "on 2 processes" in output
    printed = [line for line in output.splitlines() if line.startswith("iter ")]
    assert len(printed) == len({line.split()[1] for line in printed})   # rank 0 alone prints
    reached = checkpoint_iteration(run_dir)
    assert reached >= 2
    resumed = subprocess.run([sys.executable, "-m", "arrayhf", "resume", str(run_dir),
                              "--iterations", str(reached + 2)], env=environment(),
                             capture_output=True, text=True, timeout=120)
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert f"resumed from the checkpoint of iteration {reached}" in resumed.stdout
    assert checkpoint_iteration(run_dir) == reached + 2
    assert logged(run_dir) == list(range(1, reached + 3))
    results = [line for line in (run_dir / "results").read_text().splitlines()
               if line.startswith("iter ")]
    assert len(results) >= reached + 2 and "on 2 processes" in results[0]
    assert "processes" not in results[-1]   # the last, resumed on one process


@pytest.mark.only_backend("numpy")
@pytest.mark.parametrize("fault", ["killed", "hung"])
def test_a_dead_or_hung_process_stops_the_other_with_a_clear_error(tmp_path, fault):
    """Without torchrun's agent to stop them: rank 1 SIGKILLed (its sockets close: rank 0 stops
    at once) or SIGSTOPped (rank 0 stops after the 10 s timeout set here), once the run has
    checkpointed; rank 0 exits with status 1 and says why, in seconds."""
    run_dir, log = tmp_path / "run", tmp_path / "log"
    processes = start(["-m", "arrayhf", "train", *RUN, "--iterations", "1000", "--save-every",
                       "1", "--run-dir", str(run_dir)], 2, log,
                      **{distributed.TIMEOUT_ENVIRONMENT: "10"})
    try:
        wait_until(lambda: checkpoint_iteration(run_dir) >= 1
                   or any(p.poll() is not None for p in processes), "the first checkpoint")
        processes[1].send_signal(signal.SIGKILL if fault == "killed" else signal.SIGSTOP)
        stopped = time.monotonic()
        assert processes[0].wait(timeout=60) == 1
        seconds = time.monotonic() - stopped
    finally:
        for process in processes:
            process.kill()
            process.wait()
    message = log.with_suffix(".0").read_text()
    assert "rank 0 of 2: all-reduce failed: another process stopped" in message \
        or "rank 0 of 2: broadcast failed: another process stopped" in message, message[-3000:]
    assert seconds < (10 if fault == "killed" else 30), seconds
    assert checkpoint_iteration(run_dir) >= 1   # what a resume starts from


# -- the communicator and the sharding, in this process ------------------------------------------
def test_one_process_adds_nothing(xp, device):
    single = distributed.SingleProcess()
    array = backend.from_host(np.arange(3.0), xp, device=device)
    assert single.all_reduce_sum(array) is array and single.broadcast(array) is array
    assert single.sum_floats(1.5, 2.0) == (1.5, 2.0)
    assert isinstance(single, distributed.Communicator)


@pytest.fixture
def group_of_one():
    """torch.distributed on this process alone (gloo, an in-memory store)."""
    torch.distributed.init_process_group("gloo", store=torch.distributed.HashStore(), rank=0,
                                         world_size=1)
    try:
        yield distributed.TorchDistributed()
    finally:
        distributed.shutdown()


def test_the_communicator_keeps_backend_dtype_device_and_shares_where_it_can(
        xp, device, group_of_one):
    """numpy and torch arrays are reduced in place through DLPack (the same array back); JAX and
    array-api-strict arrays through a copy, onto their own backend, dtype and device."""
    name = backend.name_of(xp)
    for dtype in ("float32", "float64"):
        array = backend.from_host(np.array([1.0, -2.5, 3.25]), xp, dtype=dtype, device=device)
        for result in (group_of_one.all_reduce_sum(array), group_of_one.broadcast(array)):
            assert (result is array) == (name in ("numpy", "torch"))
            assert backend.name_of(backend.namespace(name)) == name
            assert result.dtype == array.dtype
            assert str(getattr(result, "device", "cpu")) == str(getattr(array, "device", "cpu"))
            np.testing.assert_array_equal(host(result), [1.0, -2.5, 3.25])
    assert group_of_one.sum_floats(1.5, 2.0) == (1.5, 2.0)
    assert (group_of_one.rank, group_of_one.world_size) == (0, 1)


class Mirror:
    """A communicator of ``world_size`` processes that all hold this one's values (enough for
    the sharding's checks): sums multiply by the world size; ``broadcast`` can be made to lie."""

    def __init__(self, rank, world_size, rank0=None):
        self.rank, self.world_size, self.rank0 = rank, world_size, rank0

    def all_reduce_sum(self, array):
        return self.world_size * array

    def sum_floats(self, *values):
        return tuple(self.world_size * value for value in values)

    def broadcast(self, array, source=0):
        return array if self.rank0 is None else self.rank0(array)


class Sequences:
    """Two batches of time-major sequences with integer-id inputs and a mask."""

    train_batches, test_batches = [0, 1], []

    def __init__(self, xp, device, n_cases=5, mask=None):
        rng = np.random.default_rng(0)
        self.batches = {
            i: Batch(backend.from_host(rng.integers(0, 4, (3, n_cases)), xp, device=device),
                     backend.from_host(rng.standard_normal((3, n_cases, 2)), xp, device=device),
                     backend.from_host(np.ones((3, n_cases)) if mask is None else mask, xp,
                                       device=device))
            for i in self.train_batches}
        self.forgotten = 0

    def batch(self, batch_id):
        return self.batches[batch_id]

    def forget(self):
        self.forgotten += 1

    def zero_one_error(self, batch, predictions):
        return None


def test_the_processes_rows_cover_every_batch_once(xp, device):
    data = Sequences(xp, device, n_cases=5)
    assert [rows_of(r, 3, 5) for r in range(3)] == [slice(0, 1), slice(1, 3), slice(3, 5)]
    for part in ("inputs", "targets", "mask"):
        pieces = [host(getattr(ShardedDataset(data, Mirror(r, 3)).batch(1), part))
                  for r in range(3)]
        np.testing.assert_array_equal(np.concatenate(pieces, axis=1),
                                      host(getattr(data.batch(1), part)))
    sharded = ShardedDataset(data, Mirror(1, 3))
    assert sharded.batch(0) is sharded.batch(0)    # cut once
    assert sharded.batch(0).inputs.dtype == data.batch(0).inputs.dtype
    sharded.forget()
    assert data.forgotten == 1 and sharded.train_batches == [0, 1] and sharded.get_state() is None


def test_a_shard_without_cases_or_outputs_and_other_data_are_refused(xp, device):
    with pytest.raises(ValueError, match="has 5 cases, fewer than the 6 processes"):
        ShardedDataset(Sequences(xp, device), Mirror(0, 6)).batch(0)
    mask = np.ones((3, 5))
    mask[:, 2:] = 0.0
    with pytest.raises(ValueError, match="the cases 2 .. 4 of rank 1 count no output"):
        ShardedDataset(Sequences(xp, device, mask=mask), Mirror(1, 2)).batch(0)
    with pytest.raises(ValueError, match="hold other batches than rank 0"):
        ShardedDataset(Sequences(xp, device), Mirror(1, 2, rank0=lambda array: array + 1.0))


def test_a_refusal_or_another_iterate_elsewhere_stops_every_process():
    """raise_together: a process whose check passed raises too when another's failed, and one
    whose check failed raises its own error; check_agree: values that are not rank 0's (by one
    rounding) stop every process."""
    def refuse():
        raise ValueError("mine")

    with pytest.raises(distributed.DistributedError, match="1 other process"):
        distributed.raise_together(_Refused(), lambda: 3)
    with pytest.raises(ValueError, match="mine"):
        distributed.raise_together(_Refused(), refuse)
    assert distributed.raise_together(_Agreeing(), lambda: 3) == 3
    distributed.check_agree(Mirror(1, 2), [1.0, 2.0], "iterate 1")
    with pytest.raises(distributed.DistributedError, match="computed another iterate 4 than"):
        distributed.check_agree(Mirror(1, 2, rank0=lambda array: np.nextafter(array, 3.0)),
                                [1.0, 2.0], "iterate 4")


class _Refused(Mirror):
    """Rank 1 of 2, whose partner refused: every sum of a flag counts one more."""

    def __init__(self):
        super().__init__(1, 2)

    def sum_floats(self, *values):
        return tuple(value + 1.0 for value in values)


class _Agreeing(Mirror):
    """Rank 1 of 2, whose partner passed: sums are this process's values."""

    def __init__(self):
        super().__init__(1, 2)

    def sum_floats(self, *values):
        return values


def test_torchrun_processes_take_an_equal_fixed_share_of_the_cores(monkeypatch):
    monkeypatch.setattr(threads, "_setting", "auto")
    monkeypatch.setattr(threads, "_current", None)
    monkeypatch.setattr(threads, "cores", lambda: 2)
    monkeypatch.setattr(threads, "other_runnable", lambda: 0)   # ignored: the share is fixed
    monkeypatch.setattr(threads, "_apply", lambda count: None)
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "2")
    assert threads.adapt() == 1
    monkeypatch.setattr(threads, "cores", lambda: 16)
    assert threads.adapt() == 8
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "1")
    assert threads.adapt() == 16


@pytest.mark.only_backend("numpy")
def test_import_arrayhf_imports_no_torch():
    """torch is imported when a process group starts, not by ``import arrayhf``."""
    probe = "import sys, arrayhf; assert 'torch' not in sys.modules, sorted(sys.modules)"
    finished = subprocess.run([sys.executable, "-c", probe], env=environment(),
                              capture_output=True, text=True, timeout=60)
    assert finished.returncode == 0, finished.stderr[-2000:]
