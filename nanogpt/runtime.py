"""Where a run happens: the device, the precision, the threads, the processes, and Ctrl-C.

None of this is the algorithm; the training loop calls it by name:

    rt = setup_runtime(cfg)          # cuda, then mps, then cpu; bfloat16 autocast where it pays
    with rt.autocast: ...            # the forward pass, in the run's precision
    model, note = compile_model(model, example, rt)   # --compile, eager where compiling fails
    rt.mean(loss)                    # a number averaged over the processes (torchrun)
    with StopRequests(rt) as stop:   # Ctrl-C and SIGTERM finish the step instead of killing it
        if stop.requested(): ...
"""

from __future__ import annotations

import os
import shutil
import signal
import threading
import time
from contextlib import nullcontext
from dataclasses import dataclass

import torch
import torch.distributed as dist

from nanogpt.errors import UserError

# What `auto` turns on, by measurement (bench/bench_train.py --equal-time, bench/gpu_check.py).
# --dtype auto: bfloat16 autocast on CUDA (where supported); on a CPU only where it has one of
# these bfloat16 units (see cpu_bf16_units) and they were measured to pay. AMX (matrix tiles) gives
# 1.24 times the gpt-cpu steps in ten minutes (README, "Training the GPT"). AVX-512 BF16 alone
# (bfloat16 dot products, no tiles) gave 1.28x the steps and no lower loss at equal time, so it is
# not named. Without either unit, bfloat16 is emulated and no faster than float32.
AUTO_BFLOAT16_CPU_UNITS: tuple[str, ...] = ("amx_bf16",)
# --compile auto: the device types where torch.compile pays (on a CPU: when a C++ compiler is
# found). CUDA as in nanoGPT's measurement (an A100: 250 -> 135 ms/iter); the CPU not yet shown.
AUTO_COMPILE = ("cuda",)


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


BF16_UNITS = ("amx_bf16", "avx512_bf16")


def cpu_bf16_units() -> set[str]:
    """The CPU's bfloat16 matrix units: amx_bf16 (AMX tiles: Intel Sapphire Rapids and later),
    avx512_bf16 (bfloat16 dot products in AVX-512: Intel Cooper Lake, AMD Zen 4 and later)."""
    get = getattr(torch.cpu, "get_capabilities", None)  # torch >= 2.8
    if get is not None:
        capabilities = get()
        return {unit for unit in BF16_UNITS if capabilities.get(unit, False)}
    try:
        with open("/proc/cpuinfo") as f:
            flags = set(f.read().split())
    except OSError:
        return set()
    return flags & set(BF16_UNITS)


def cpu_has_amx() -> bool:
    """True on a CPU with AMX bfloat16 tiles."""
    return "amx_bf16" in cpu_bf16_units()


def pick_dtype(name: str, device_type: str) -> str:
    """--dtype: `auto` is bfloat16 on CUDA (where supported) and on CPUs whose bfloat16 units
    AUTO_BFLOAT16_CPU_UNITS names; float32 elsewhere."""
    if name != "auto":
        return name
    if device_type == "cuda":
        return "bfloat16" if torch.cuda.is_bf16_supported() else "float32"
    if device_type == "cpu" and set(AUTO_BFLOAT16_CPU_UNITS) & cpu_bf16_units():
        return "bfloat16"
    return "float32"


def cpp_compiler() -> str | None:
    """The C++ compiler torch.compile's CPU backend (inductor) would call, or None if none is found."""
    from torch._inductor import config  # imported here: it is slow, and only --compile needs it

    names = config.cpp.cxx if isinstance(config.cpp.cxx, (list, tuple)) else (config.cpp.cxx,)
    found = [shutil.which(name) for name in names if name]  # None: conda's gcc, if asked for
    return next((path for path in found if path), None)


def pick_compile(mode: str, device_type: str) -> bool:
    """--compile: on, off, or auto (on where AUTO_COMPILE names the device; a CPU also needs a
    compiler, without which auto quietly stays eager)."""
    if mode == "auto":
        return device_type in AUTO_COMPILE and (device_type != "cpu" or cpp_compiler() is not None)
    return mode == "on"


@dataclass
class Runtime:
    """The device, the precision, and this process's place among the processes."""

    device: str
    param_dtype: torch.dtype  # the weights' dtype (float64 for exactness checks)
    autocast: object  # a context manager: bfloat16 autocast, or nothing
    rank: int = 0
    world: int = 1
    own_group: bool = False  # True when this run created the process group (and must end it)
    compile: bool = False  # try torch.compile (--compile on, or auto where it pays)

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
    dtype = pick_dtype(cfg.dtype, device_type)
    autocast = nullcontext()
    if dtype == "bfloat16":  # weights stay float32; matmuls run in bfloat16
        autocast = torch.autocast(device_type=device_type, dtype=torch.bfloat16)
    param_dtype = torch.float64 if dtype == "float64" else torch.float32
    return Runtime(device, param_dtype, autocast, rank, world, own_group,
                   pick_compile(cfg.compile, device_type))


def compile_model(model: torch.nn.Module, example: tuple, rt: Runtime):
    """torch.compile(model), tried at once on one example batch (x, y): an evaluation pass and a
    training pass, the two graphs the loop will call. Where that fails (no C++ compiler on a CPU,
    a backend error) the model stays eager. Returns (module, None) or (model, a one-line warning).
    The try leaves no trace: the weights, buffers and random state are put back, no .grad stays."""
    if rt.device_type == "cpu" and cpp_compiler() is None:
        return model, "warning: --compile: no C++ compiler found (set CXX or install g++); training eager"
    compiled = torch.compile(model)
    saved = {k: v.clone() for k, v in model.state_dict().items()}  # BatchNorm's running statistics
    devices = [rt.device] if rt.device_type == "cuda" else []
    x, y = (t.to(rt.device) for t in example)
    was_training = model.training
    try:
        with torch.random.fork_rng(devices=devices):  # dropout's draws do not count
            with torch.no_grad(), rt.autocast:
                compiled.eval()(x, y)
            with rt.autocast:
                _, loss = compiled.train()(x, y)
            loss.backward()
    except Exception as e:  # whatever the backend raises; eager runs the very same model
        torch._dynamo.reset()  # loaded by torch.compile: forget what it traced
        first = (str(e).strip().splitlines() or [""])[0][:160]
        return model, f"warning: --compile failed ({type(e).__name__}: {first}); training eager"
    finally:
        model.train(was_training)
        model.load_state_dict(saved)
        model.zero_grad(set_to_none=True)
    return compiled, None


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
