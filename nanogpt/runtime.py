"""Where a run happens: the device, the precision, the threads, the processes, and Ctrl-C.

None of this is the algorithm; the training loop calls it by name:

    rt = setup_runtime(cfg)          # cuda, then mps, then cpu; bfloat16 autocast where it pays
    with rt.autocast: ...            # the forward pass, in the run's precision
    rt.mean(loss)                    # a number averaged over the processes (torchrun)
    with StopRequests(rt) as stop:   # Ctrl-C and SIGTERM finish the step instead of killing it
        if stop.requested(): ...
"""

from __future__ import annotations

import os
import signal
import threading
import time
from contextlib import nullcontext
from dataclasses import dataclass

import torch
import torch.distributed as dist

from nanogpt.errors import UserError


def pick_device(name: str = "auto") -> str:
    """cuda, then mps, then cpu; a named device must exist."""
    if name == "auto":
        if torch.cuda.is_available():
            return "cuda"
        mps = getattr(torch.backends, "mps", None)
        return "mps" if mps is not None and mps.is_available() else "cpu"
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise UserError(f"--device {name}: CUDA is not available here (try --device cpu)")
    if name == "mps" and not torch.backends.mps.is_available():
        raise UserError("--device mps: MPS is not available here (try --device cpu)")
    return name


@dataclass
class Runtime:
    """The device, the precision, and this process's place among the processes."""

    device: str
    param_dtype: torch.dtype  # the weights' dtype (float64 for exactness checks)
    autocast: object  # a context manager: bfloat16 autocast, or nothing
    rank: int = 0
    world: int = 1
    own_group: bool = False  # True when this run created the process group (and must end it)

    @property
    def master(self) -> bool:
        """Rank 0: the one process that writes files and prints."""
        return self.rank == 0

    @property
    def device_type(self) -> str:
        return self.device.split(":")[0]

    def mean(self, value: torch.Tensor) -> float:
        """A number averaged over all processes."""
        if self.world > 1:
            value = value.detach().clone()
            dist.all_reduce(value)
            value /= self.world
        return value.item()

    def clock(self) -> float:
        """The time, once the device has finished what it was given (a GPU runs behind python)."""
        if self.device_type == "cuda":
            torch.cuda.synchronize()
        return time.time()

    def close(self) -> None:
        """Leave the process group if this run joined it."""
        if self.own_group:
            dist.destroy_process_group()


def setup_runtime(cfg) -> Runtime:
    """Pick the device and precision; join the process group when launched by torchrun."""
    device = pick_device(cfg.device)
    rank, world, own_group = 0, 1, False
    if "RANK" in os.environ and "WORLD_SIZE" in os.environ:  # launched by torchrun
        rank, world = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
        if device.startswith("cuda"):
            device = f"cuda:{int(os.environ.get('LOCAL_RANK', 0))}"
            torch.cuda.set_device(device)
        if not dist.is_initialized():
            dist.init_process_group("nccl" if device.startswith("cuda") else "gloo")
            own_group = True
    if cfg.grad_accum % world:
        raise UserError(f"--grad-accum ({cfg.grad_accum}) must be a multiple of the number of "
                        f"processes ({world}): each process computes grad_accum/{world} micro-batches")
    device_type = device.split(":")[0]
    if device_type == "cpu":  # the cores are shared among the processes on this machine
        torch.set_num_threads(cfg.threads or max(1, (os.cpu_count() or 1) // world))
    if device_type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    dtype = cfg.dtype
    if dtype == "auto":
        dtype = "bfloat16" if device_type == "cuda" and torch.cuda.is_bf16_supported() else "float32"
    autocast = nullcontext()
    if dtype == "bfloat16":  # weights stay float32; matmuls run in bfloat16
        autocast = torch.autocast(device_type=device_type, dtype=torch.bfloat16)
    param_dtype = torch.float64 if dtype == "float64" else torch.float32
    return Runtime(device, param_dtype, autocast, rank, world, own_group)


class StopRequests:
    """Ctrl-C (SIGINT) and a polite kill (SIGTERM) ask the run to stop after the current step.

    A second Ctrl-C stops at once (KeyboardInterrupt). Outside the main thread (a notebook's
    worker, a test runner's thread) signals cannot be caught, and nothing is installed.
    """

    SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __init__(self, rt: Runtime):
        self.rt, self.seen, self.previous = rt, False, {}

    def __enter__(self) -> StopRequests:
        if threading.current_thread() is threading.main_thread():
            self.previous = {s: signal.signal(s, self._handle) for s in self.SIGNALS}
        return self

    def __exit__(self, *exc) -> None:
        for sig, handler in self.previous.items():
            signal.signal(sig, handler)

    def _handle(self, signum, frame):
        if self.seen:
            raise KeyboardInterrupt
        self.seen = True

    def requested(self) -> bool:
        """True when any process saw a stop signal: every process must leave the loop at the same
        step, or the others would wait forever in their next all-reduce."""
        if self.rt.world == 1:
            return self.seen
        flag = torch.tensor(float(self.seen), device=self.rt.device)
        dist.all_reduce(flag, op=dist.ReduceOp.MAX)
        return bool(flag.item())
