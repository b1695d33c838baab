"""arrayhf.threads: the thread setting is parsed strictly, applied to torch's pool and numpy's BLAS
pool, and 'auto' gives every core to a run alone and a fair share beside other jobs."""

from __future__ import annotations

import pytest
import threadpoolctl
import torch

import arrayhf.cli
from arrayhf import threads


@pytest.fixture
def restored(monkeypatch):
    """Leave the thread pools and the setting as they were."""
    torch_threads = torch.get_num_threads()
    with threadpoolctl.threadpool_limits(limits=None):
        monkeypatch.setattr(threads, "_setting", None)
        monkeypatch.setattr(threads, "_current", None)
        monkeypatch.setattr(threads, "RECHECK_SECONDS", 0.0)
        yield
    torch.set_num_threads(torch_threads)


def test_the_setting_is_auto_off_or_a_positive_integer():
    assert threads.parse("auto") == "auto" and threads.parse(" OFF ") == "off"
    assert threads.parse("3") == 3 and threads.parse(2) == 2
    for bad in ("0", "-1", "1.5", "two", "", True, None, 2.0):
        with pytest.raises(ValueError, match="expected threads"):
            threads.parse(bad)


def test_a_number_sets_torch_and_the_blas_pools(restored):
    threads.configure(1)
    assert torch.get_num_threads() == 1
    blas = [pool for pool in threadpoolctl.threadpool_info() if pool["user_api"] == "blas"]
    assert blas and all(pool["num_threads"] == 1 for pool in blas)


def test_auto_takes_the_cores_other_processes_leave(restored, monkeypatch):
    monkeypatch.setattr(threads, "cores", lambda: 4)
    monkeypatch.setattr(threads, "other_runnable", lambda: 0)
    threads.configure("auto")
    assert torch.get_num_threads() == 4
    monkeypatch.setattr(threads, "other_runnable", lambda: 3)
    assert threads.adapt() == 1 and torch.get_num_threads() == 1
    monkeypatch.setattr(threads, "other_runnable", lambda: 9)
    assert threads.adapt() == 1
    monkeypatch.setattr(threads, "other_runnable", lambda: None)   # no /proc: left alone
    assert threads.adapt() is None and torch.get_num_threads() == 1


def test_auto_takes_the_median_of_five_readings_and_rechecks_once_a_second(restored,
                                                                          monkeypatch):
    """A runnable thread that shows in one reading (an idle machine has them), or an idle
    moment of a busy machine, does not decide; and the count is not redone for every iteration
    of a fast run."""
    readings = iter([1, 0, 0, 2, 0] + [1, 0, 1, 1, 2])
    monkeypatch.setattr(threads, "cores", lambda: 2)
    monkeypatch.setattr(threads, "other_runnable", lambda: next(readings))
    threads.configure("auto")
    assert torch.get_num_threads() == 2
    monkeypatch.setattr(threads, "RECHECK_SECONDS", 60.0)
    assert threads.adapt() == 2              # within the minute: not counted again
    monkeypatch.setattr(threads, "RECHECK_SECONDS", 0.0)
    assert threads.adapt() == 1              # 1, 0, 1, 1, 2: another job runs


def test_off_leaves_the_pools_alone(restored, monkeypatch):
    torch.set_num_threads(1)
    monkeypatch.setenv(threads.ENVIRONMENT, "off")
    assert threads.adapt() is None and torch.get_num_threads() == 1


def test_other_runnable_reads_this_machine():
    others = threads.other_runnable()
    assert others is None or others >= 0


def test_the_command_line_refuses_a_bad_thread_count(capsys):
    assert arrayhf.cli.main(["train", "--problem", "addition", "--threads", "0"]) == 2
    assert "expected threads 'auto', 'off' or a positive integer" in capsys.readouterr().err
