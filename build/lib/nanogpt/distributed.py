"""torchrun: one run on several processes (GPUs, or CPU processes with gloo), the course's path
past one machine. A plain `python -m nanogpt.train` is one process and none of this does anything.

    procs, device = join_processes(device)          # rank and world from torchrun's environment
    ddp_model = wrap(model, procs, device)          # gradients averaged over the processes
    for x, y, sync in my_micro_batches(...): ...    # this process's share of each step

Every process draws the same global batch from the same generator and keeps its own share of the
micro-batches: N processes with grad_accum=N compute exactly the step that one process computes
with grad_accum=N (with dropout 0: each process draws its own dropout masks). Only rank 0 writes
files and prints.
"""

from __future__ import annotations

import os
from contextlib import nullcontext
from dataclasses import dataclass

import torch
import torch.distributed as dist

from nanogpt.errors import UserError


@dataclass
class Processes:
    """This process's place among the run's processes (rank 0 of 1 without torchrun)."""

    rank: int = 0
    world: int = 1
    own_group: bool = False  # True when this run created the process group (and must end it)

    @property
    def master(self) -> bool:
        """Rank 0: the one process that writes files and prints."""
        return self.rank == 0

    def mean(self, value: torch.Tensor) -> float:
        """A number averaged over all processes."""
        if self.world > 1:
            value = value.detach().clone()
            dist.all_reduce(value)
            value /= self.world
        return value.item()

    def any(self, flag: bool, device: str) -> bool:
        """True when any process's flag is True (so that all leave a loop at the same step)."""
        if self.world == 1:
            return flag
        t = torch.tensor(float(flag), device=device)
        dist.all_reduce(t, op=dist.ReduceOp.MAX)
        return bool(t.item())

    def from_rank0(self, value: int, device: str) -> int:
        """Rank 0's value of an integer, on every process."""
        if self.world == 1:
            return value
        t = torch.tensor(value, device=device)  # nccl broadcasts only tensors on the GPU
        dist.broadcast(t, src=0)
        return int(t)

    def close(self) -> None:
        """Leave the process group if this run joined it."""
        if self.own_group:
            dist.destroy_process_group()


def join_processes(device: str, grad_accum: int) -> tuple[Processes, str]:
    """Join the process group when launched by torchrun; each process gets its own GPU."""
    if not ("RANK" in os.environ and "WORLD_SIZE" in os.environ):
        return Processes(), device
    procs = Processes(int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"]))
    if device.startswith("cuda"):
        device = f"cuda:{int(os.environ.get('LOCAL_RANK', 0))}"
        torch.cuda.set_device(device)
    if not dist.is_initialized():
        dist.init_process_group("nccl" if device.startswith("cuda") else "gloo")
        procs.own_group = True
    if grad_accum % procs.world:
        procs.close()
        raise UserError(f"--grad-accum ({grad_accum}) must be a multiple of the number of processes "
                        f"({procs.world}): each process computes grad_accum/{procs.world} micro-batches")
    return procs, device


def wrap(model: torch.nn.Module, procs: Processes, device: str) -> torch.nn.Module:
    """The model in DDP under torchrun (its backward averages the gradients), else the model."""
    if procs.world == 1:
        return model
    from torch.nn.parallel import DistributedDataParallel as DDP

    return DDP(model, device_ids=[torch.device(device).index] if device.startswith("cuda") else None)


def my_micro_batches(draw, grad_accum: int, procs: Processes, ddp_model, device: str):
    """This process's share of a step's grad_accum micro-batches (x, y, sync), drawn in the same
    order everywhere; `sync` is the context the backward runs in (DDP syncs at the last one only)."""
    n_mine = grad_accum // procs.world
    for i in range(grad_accum):
        x, y = draw()  # every process draws every batch ...
        if i // n_mine == procs.rank:  # ... and keeps only its own
            last = i % n_mine == n_mine - 1
            sync = nullcontext() if last or procs.world == 1 else ddp_model.no_sync()
            yield x.to(device, non_blocking=True), y.to(device, non_blocking=True), sync
