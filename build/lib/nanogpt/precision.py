"""--dtype: the precision a run computes in. `auto` picks bfloat16 autocast where it was measured
to pay, float32 elsewhere; the weights themselves stay float32 (float64 for exactness checks).

    autocast = autocast_for(pick_dtype("auto", "cpu"), "cpu")
    with autocast: logits, loss = model(x, y)    # the matmuls in bfloat16, or as they are
"""

from __future__ import annotations

from contextlib import nullcontext

import torch

# What `auto` turns on, by measurement (bench/bench_train.py --equal-time, bench/gpu_check.py).
# --dtype auto: bfloat16 autocast on CUDA (where supported); on a CPU only where it has one of
# these bfloat16 units (see cpu_bf16_units) and they were measured to pay. AMX (matrix tiles) gives
# 1.24 times the gpt-cpu steps in ten minutes (README, "Training the GPT"). AVX-512 BF16 alone
# (bfloat16 dot products, no tiles) gave 1.28x the steps and no lower loss at equal time, so it is
# not named. Without either unit, bfloat16 is emulated and no faster than float32.
AUTO_BFLOAT16_CPU_UNITS: tuple[str, ...] = ("amx_bf16",)
BF16_UNITS = ("amx_bf16", "avx512_bf16")


def cpu_bf16_units() -> set[str]:
    """The CPU's bfloat16 matrix units: amx_bf16 (AMX tiles: Intel Sapphire Rapids and later),
    avx512_bf16 (bfloat16 dot products in AVX-512: Intel Cooper Lake, AMD Zen 4 and later)."""
    get = getattr(torch.cpu, "get_capabilities", None)  # torch >= 2.8
    if get is not None:
        capabilities = get()
        return {unit for unit in BF16_UNITS if capabilities.get(unit, False)}
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            flags = set(f.read().split())
    except OSError:  # not Linux
        return set()
    return flags & set(BF16_UNITS)


def cpu_has_amx() -> bool:
    """True on a CPU with AMX bfloat16 tiles."""
    return "amx_bf16" in cpu_bf16_units()


def pick_dtype(name: str, device_type: str) -> str:
    """--dtype: `auto` is bfloat16 on CUDA (where supported) and on CPUs whose bfloat16 units
    AUTO_BFLOAT16_CPU_UNITS names; float32 elsewhere (MPS included)."""
    if name != "auto":
        return name
    if device_type == "cuda":
        return "bfloat16" if torch.cuda.is_bf16_supported() else "float32"
    if device_type == "cpu" and set(AUTO_BFLOAT16_CPU_UNITS) & cpu_bf16_units():
        return "bfloat16"
    return "float32"


def autocast_for(dtype: str, device_type: str):
    """The context the forward pass runs in: bfloat16 autocast, or a context that does nothing."""
    if dtype == "bfloat16":  # weights stay float32; matmuls run in bfloat16
        return torch.autocast(device_type=device_type, dtype=torch.bfloat16)
    return nullcontext()


def weights_dtype(dtype: str) -> torch.dtype:
    """The dtype the weights are kept in: float64 only when asked for, float32 otherwise."""
    return torch.float64 if dtype == "float64" else torch.float32
