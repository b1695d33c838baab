"""HF on several processes: a communicator over ``torch.distributed`` (host side).

Data-parallel HF (derivations/cg-and-damping.md, (H6)) needs four things from the processes it runs
on: who this process is (``rank``) among how many (``world_size``), the sum of an array over every
process (``all_reduce_sum``: the gradient, every G v of CG, the preconditioner's statistic),
the sum of a few host numbers (``sum_floats``: losses and output counts), and one process's array
given to all (``broadcast``: θ at the start, rank 0's word on what only it looked at).

:class:`SingleProcess`, the default, does nothing: its sums return their input, so one process
runs exactly as it did before. :class:`TorchDistributed` runs on ``torch.distributed`` (gloo on CPU;
on CUDA, NCCL for device arrays and gloo for host numbers), started by ``torchrun``
(:func:`from_environment` reads what it sets). It takes the arrays of every backend:

* numpy and torch-CPU arrays become CPU tensors through DLPack without a copy (gloo), CuPy and
  torch-CUDA arrays CUDA tensors without a copy (NCCL); the sum is written into the array given,
  which is returned: ``all_reduce_sum`` consumes its argument;
* JAX arrays (immutable) and anything DLPack cannot share (array-api-strict, read-only or
  non-contiguous numpy arrays) go through a copy, and a new array of the same backend, dtype and
  device is returned.

Every rank computes the same local arithmetic on the same reduced numbers, so every decision of
the HF loop (CG's stop, backtracking, ρ, the line search) is the same on every rank;
:func:`check_agree` confirms it once an iteration. A collective that fails (another process died:
its sockets close; or hung: the process group's timeout, ``ARRAYHF_DISTRIBUTED_TIMEOUT`` seconds,
default 300) raises :class:`DistributedError`. torch is imported when a process group is started,
never by ``import arrayhf``.
"""

from __future__ import annotations

import datetime
import os
import sys
from collections.abc import Callable, Sequence
from typing import Any, Protocol, TypeVar, runtime_checkable

import array_api_compat
import numpy as np

from arrayhf import backend

TIMEOUT_ENVIRONMENT = "ARRAYHF_DISTRIBUTED_TIMEOUT"
DEFAULT_TIMEOUT_SECONDS = 300.0
Result = TypeVar("Result")


class DistributedError(RuntimeError):
    """A collective failed: another process stopped, hung past the timeout, or disagreed."""


@runtime_checkable
class Communicator(Protocol):
    """What HF asks of the processes it runs on."""

    @property
    def rank(self) -> int: ...

    @property
    def world_size(self) -> int: ...

    def all_reduce_sum(self, array: Any) -> Any: ...

    def sum_floats(self, *values: float) -> tuple[float, ...]: ...

    def broadcast(self, array: Any, source: int = 0) -> Any: ...


class SingleProcess:
    """One process: every sum is its input, every broadcast its array (no work, no copy)."""

    rank = 0
    world_size = 1

    def all_reduce_sum(self, array: Any) -> Any:
        """``array`` itself: the sum over one process."""
        return array

    def sum_floats(self, *values: float) -> tuple[float, ...]:
        """``values`` themselves."""
        return values

    def broadcast(self, array: Any, source: int = 0) -> Any:
        """``array`` itself."""
        return array

    def __repr__(self) -> str:
        return "SingleProcess()"


def _torch():
    import torch
    import torch.distributed

    return torch


class TorchDistributed:
    """The processes of ``torch.distributed``'s default group (started by
    :func:`start_process_group`, or by the caller)."""

    def __init__(self) -> None:
        distributed = _torch().distributed
        if not distributed.is_initialized():
            raise DistributedError("no torch.distributed process group: start one first "
                                   "(arrayhf.distributed.start_process_group)")
        self._distributed = distributed
        self._rank, self._world_size = distributed.get_rank(), distributed.get_world_size()

    @property
    def rank(self) -> int:
        """This process's index, 0 .. world_size − 1."""
        return self._rank

    @property
    def world_size(self) -> int:
        """The number of processes."""
        return self._world_size

    def _collective(self, operation: Callable[[], Any], what: str) -> None:
        try:
            operation()
        except RuntimeError as error:   # gloo: peer closed, timed out; NCCL: watchdog
            raise DistributedError(
                f"rank {self.rank} of {self.world_size}: {what} failed: another process stopped "
                f"or did not answer within the timeout (${TIMEOUT_ENVIRONMENT}); see the other "
                f"processes' messages ({error})") from error

    def all_reduce_sum(self, array: Any) -> Any:
        """Σ over the processes of ``array``, which this call consumes: the sum is written into
        it where DLPack shares its memory (numpy, torch, CuPy), else a new array of its backend,
        dtype and device is made (JAX, array-api-strict)."""
        tensor, shared = _as_tensor(array)
        reduce_op = self._distributed.ReduceOp.SUM
        self._collective(lambda: self._distributed.all_reduce(tensor, op=reduce_op), "all-reduce")
        return _from_tensor(tensor, array, shared)

    def sum_floats(self, *values: float) -> tuple[float, ...]:
        """Σ over the processes of each host number (one float64 all-reduce on the CPU)."""
        total = self.all_reduce_sum(np.array(values, dtype=np.float64))
        return tuple(float(value) for value in total)

    def broadcast(self, array: Any, source: int = 0) -> Any:
        """Rank ``source``'s ``array`` on every process (consumed like ``all_reduce_sum``'s)."""
        tensor, shared = _as_tensor(array)
        self._collective(lambda: self._distributed.broadcast(tensor, src=source), "broadcast")
        return _from_tensor(tensor, array, shared)

    def __repr__(self) -> str:
        return f"TorchDistributed(rank={self.rank}, world_size={self.world_size})"


def _as_tensor(array: Any) -> tuple[Any, bool]:
    """(a torch tensor holding ``array``'s values, whether it shares ``array``'s memory)."""
    torch = _torch()
    if isinstance(array, torch.Tensor):
        return (array, True) if array.is_contiguous() else (array.contiguous(), False)
    shareable = (isinstance(array, np.ndarray) and array.flags.writeable
                 and array.flags.c_contiguous) or array_api_compat.is_cupy_array(array)
    if shareable:
        try:
            return torch.from_dlpack(array), True
        except (TypeError, RuntimeError, BufferError):
            pass
    try:   # JAX: its buffer is immutable, so the shared tensor is copied before it is written
        return torch.from_dlpack(array).clone(), False
    except (TypeError, RuntimeError, BufferError, AttributeError, ValueError):
        return torch.from_numpy(np.array(backend.to_numpy(array))), False


def _from_tensor(tensor: Any, array: Any, shared: bool) -> Any:
    """``array`` (its memory holds the result) when shared, else the tensor's values as a new
    array of ``array``'s backend, dtype and device."""
    torch = _torch()
    if shared:
        if array_api_compat.is_cupy_array(array):
            # the same memory as a CuPy array: the DLPack exchange makes CuPy's stream wait for
            # torch's, on which NCCL wrote the sum
            return array_api_compat.array_namespace(array).from_dlpack(tensor)
        return array
    if isinstance(array, torch.Tensor):
        return tensor
    xp = array_api_compat.array_namespace(array)
    device = array_api_compat.device(array)
    try:
        moved = xp.from_dlpack(tensor)
        if array_api_compat.device(moved) == device and moved.dtype == array.dtype:
            return moved
    except (TypeError, RuntimeError, BufferError, AttributeError, ValueError):
        pass
    return xp.asarray(tensor.cpu().numpy(), dtype=array.dtype, device=device)


# -- starting and ending a run on several processes -------------------------------------------
def timeout_seconds() -> float:
    """How long a collective waits for the other processes: ``$ARRAYHF_DISTRIBUTED_TIMEOUT``
    seconds (default 300)."""
    text = os.environ.get(TIMEOUT_ENVIRONMENT, str(DEFAULT_TIMEOUT_SECONDS))
    try:
        seconds = float(text)
    except ValueError:
        seconds = -1.0
    if not seconds > 0:
        raise ValueError(f"expected ${TIMEOUT_ENVIRONMENT} to be a positive number of seconds, "
                         f"got {text!r}")
    return seconds


def launched_world_size() -> int:
    """The number of processes ``torchrun`` started (``$WORLD_SIZE``; 1 without it)."""
    return int(os.environ.get("WORLD_SIZE", "1"))


def local_device(device: str | None) -> str | None:
    """This process's device for a run's ``device`` setting: under ``torchrun`` a CUDA or GPU
    device given without an index becomes the one of ``$LOCAL_RANK`` (one GPU per process)."""
    if launched_world_size() > 1 and device in ("cuda", "gpu"):
        return f"{device}:{int(os.environ.get('LOCAL_RANK', '0'))}"
    return device


def start_process_group(*, cuda: bool) -> TorchDistributed:
    """Start ``torch.distributed`` from the environment ``torchrun`` sets (``RANK``,
    ``WORLD_SIZE``, ``MASTER_ADDR``, ``MASTER_PORT``): gloo, and with ``cuda`` NCCL for CUDA
    tensors beside gloo for host ones; collectives wait at most :func:`timeout_seconds`."""
    try:
        torch = _torch()
    except ImportError as error:
        raise DistributedError(f"HF on several processes runs on torch.distributed, and torch "
                               f"is not installed: pip install 'arrayhf[torch]' ({error})"
                               ) from error
    timeout = datetime.timedelta(seconds=timeout_seconds())
    if not torch.distributed.is_initialized():
        if cuda:
            torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
        try:
            torch.distributed.init_process_group("cpu:gloo,cuda:nccl" if cuda else "gloo",
                                                 timeout=timeout)
        except (RuntimeError, ValueError) as error:
            raise DistributedError(f"could not start the process group of "
                                   f"{launched_world_size()} processes ({error})") from error
    return TorchDistributed()


def from_environment(*, cuda: bool = False) -> Communicator:
    """The communicator of this process: :class:`TorchDistributed` when ``torchrun`` started
    more than one process, else :class:`SingleProcess`."""
    if launched_world_size() > 1:
        return start_process_group(cuda=cuda)
    return SingleProcess()


def shutdown() -> None:
    """End the process group, if one was started (a clean exit, also after a failed collective)."""
    distributed = sys.modules.get("torch.distributed")
    if distributed is not None and distributed.is_available() and distributed.is_initialized():
        distributed.destroy_process_group()


# -- agreeing ----------------------------------------------------------------------------------
def raise_together(communicator: Communicator, check: Callable[[], Result]) -> Result:
    """``check()`` on every process; when it raised on any, it raises on all: its own error where
    it raised, a DistributedError naming how many others refused elsewhere (so that no process
    waits for one that stopped)."""
    error: Exception | None = None
    result: Any = None
    try:
        result = check()
    except (ValueError, TypeError, KeyError) as raised:
        error = raised
    if communicator.world_size == 1:
        if error is not None:
            raise error
        return result
    (refused,) = communicator.sum_floats(float(error is not None))
    if error is not None:
        raise error
    if refused:
        raise DistributedError(f"rank {communicator.rank}: {int(refused)} other process(es) of "
                               f"{communicator.world_size} refused their data; see their message")
    return result


def check_agree(communicator: Communicator, values: Sequence[float], what: str) -> None:
    """DistributedError on every process unless every process holds exactly rank 0's ``values``
    (the same iterate: the decisions of the HF loop were the same everywhere)."""
    if communicator.world_size == 1:
        return
    mine = np.array(values, dtype=np.float64)
    reference = communicator.broadcast(mine.copy())
    (differ,) = communicator.sum_floats(float(not np.array_equal(mine, reference, equal_nan=True)))
    if differ:
        raise DistributedError(
            f"rank {communicator.rank}: {int(differ)} of {communicator.world_size} processes "
            f"computed another {what} than rank 0 (here {mine.tolist()}, rank 0 "
            f"{reference.tolist()}): every process must run the same backend, device type and "
            f"thread count on the same data")
