"""Where a run computes: the device (cuda, then mps, then cpu), its threads, and --compile.

    device = pick_device("auto")
    model, warning = compile_model(model, (x, y), device, autocast)   # eager where compiling fails
"""

from __future__ import annotations

import os
import shutil

import torch

from nanogpt.errors import UserError

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


def use_device(device: str, threads: int, processes: int = 1) -> None:
    """Set the device up: on a CPU, the threads (0: the cores, shared among the processes; never
    more than the cores: thousands of threads crash torch); on CUDA, TF32 matmuls (float32 inputs,
    10-bit mantissa products: nanoGPT's setting)."""
    if device == "cpu":
        cores = os.cpu_count() or 1
        torch.set_num_threads(min(threads, cores) if threads else max(1, cores // processes))
    if device.startswith("cuda"):
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True


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


def compile_model(model: torch.nn.Module, example: tuple, device: str, autocast):
    """torch.compile(model), tried at once on one example batch (x, y): an evaluation pass and a
    training pass, the two graphs the loop will call. Where that fails (no C++ compiler on a CPU,
    a backend error) the model stays eager. Returns (module, None) or (model, a one-line warning).
    The try leaves no trace: the weights, buffers and random state are put back, no .grad stays."""
    if device == "cpu" and cpp_compiler() is None:
        return model, "warning: --compile: no C++ compiler found (set CXX or install g++); training eager"
    compiled = torch.compile(model)
    saved = {k: v.clone() for k, v in model.state_dict().items()}  # BatchNorm's running statistics
    x, y = (t.to(device) for t in example)
    was_training = model.training
    try:
        with torch.random.fork_rng(devices=[device] if device.startswith("cuda") else []):
            with torch.no_grad(), autocast:  # dropout's draws above do not count
                compiled.eval()(x, y)
            with autocast:
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
