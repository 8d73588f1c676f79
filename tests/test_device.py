import importlib.util
import math
from pathlib import Path

import pytest
import torch
from test_train import losses, tiny

import nanogpt.device as device
import nanogpt.precision as precision
from nanogpt.config import PRESETS
from nanogpt.device import pick_compile
from nanogpt.precision import autocast_for, cpu_bf16_units, cpu_has_amx, pick_dtype, weights_dtype
from nanogpt.train import train

ROOT = Path(__file__).resolve().parents[1]


# ----------------------------------------------------------------------------- bfloat16 on AMX


@pytest.mark.parametrize("units, switch, bf16", [
    ({"amx_bf16", "avx512_bf16"}, (), False),  # switched off: float32 on every CPU
    (set(), ("amx_bf16", "avx512_bf16"), False),  # no bfloat16 units: emulated, never by default
    ({"amx_bf16", "avx512_bf16"}, ("amx_bf16",), True),
    ({"avx512_bf16"}, ("amx_bf16",), False),  # AVX-512 BF16 without AMX: not unless named
    ({"avx512_bf16"}, ("amx_bf16", "avx512_bf16"), True),
], ids=["off", "no-units", "amx", "avx512-not-named", "avx512-named"])
def test_auto_dtype_on_a_cpu_is_bfloat16_only_where_its_units_are_switched_on(monkeypatch, units, switch,
                                                                              bf16):
    monkeypatch.setattr(precision, "cpu_bf16_units", lambda: units)
    monkeypatch.setattr(precision, "AUTO_BFLOAT16_CPU_UNITS", switch)
    dtype = pick_dtype("auto", "cpu")
    assert isinstance(autocast_for(dtype, "cpu"), torch.autocast) == bf16
    assert weights_dtype(dtype) == torch.float32  # autocast: the weights stay float32
    assert pick_dtype("float32", "cpu") == "float32"  # a dtype asked for is kept either way


def test_auto_means_bfloat16_on_amx_only_and_only_the_gpt_presets_ask_for_auto(monkeypatch):
    assert precision.AUTO_BFLOAT16_CPU_UNITS == ("amx_bf16",)  # measured to pay; AVX-512 BF16 alone not
    for units, expected in (({"amx_bf16", "avx512_bf16"}, "bfloat16"), ({"avx512_bf16"}, "float32"),
                            (set(), "float32")):
        monkeypatch.setattr(precision, "cpu_bf16_units", lambda units=units: units)
        assert pick_dtype("auto", "cpu") == expected
    # the small models (and the lectures' numbers) stay float32 on every machine
    dtypes = {name: cfg.dtype for name, cfg in PRESETS.items()}
    assert dtypes == {"bigram": "float32", "mlp": "float32", "smoke": "float32",
                      "gpt-cpu": "auto", "gpt-cpu-fast": "float32", "gpt-gpu": "auto"}


def test_bfloat16_units_are_read_from_torchs_cpu_capabilities(monkeypatch):
    monkeypatch.setattr(torch.cpu, "get_capabilities", lambda: {"amx_bf16": True, "avx512_bf16": True})
    assert cpu_bf16_units() == {"amx_bf16", "avx512_bf16"} and cpu_has_amx()
    monkeypatch.setattr(torch.cpu, "get_capabilities", lambda: {"amx_bf16": False, "avx512_bf16": True})
    assert cpu_bf16_units() == {"avx512_bf16"} and not cpu_has_amx()


def test_without_torchs_capabilities_they_are_read_from_proc_cpuinfo(monkeypatch, tmp_path):
    monkeypatch.delattr(torch.cpu, "get_capabilities")
    cpuinfo = tmp_path / "cpuinfo"
    real_open = open
    monkeypatch.setattr(precision, "open", lambda path, *a, **k: real_open(cpuinfo, *a, **k), raising=False)
    cpuinfo.write_text("flags\t\t: fpu avx512f amx_bf16 amx_tile\n")
    assert cpu_has_amx()
    cpuinfo.write_text("flags\t\t: fpu avx512f avx512_bf16\n")
    assert cpu_bf16_units() == {"avx512_bf16"} and not cpu_has_amx()


# ----------------------------------------------------------------------------- compile


def test_compile_auto_follows_the_table_and_needs_a_compiler_on_a_cpu(monkeypatch):
    monkeypatch.setattr(device, "AUTO_COMPILE", ("cuda", "cpu"))
    monkeypatch.setattr(device, "cpp_compiler", lambda: "/usr/bin/g++")
    assert pick_compile("auto", "cpu") and pick_compile("auto", "cuda")
    monkeypatch.setattr(device, "cpp_compiler", lambda: None)
    assert not pick_compile("auto", "cpu") and pick_compile("auto", "cuda")
    monkeypatch.setattr(device, "AUTO_COMPILE", ())
    assert not pick_compile("auto", "cuda")
    assert pick_compile("on", "cpu") and not pick_compile("off", "cuda")


def test_without_a_cpp_compiler_compile_warns_and_trains_eager(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(device.shutil, "which", lambda name: None)  # no g++, no $CXX
    train(tiny(tmp_path / "compiled", max_iters=3, eval_interval=1000, compile="on"), progress=False)
    out = capsys.readouterr().out
    assert out.count("warning: --compile: no C++ compiler found") == 1 and ", compiled" not in out
    train(tiny(tmp_path / "eager", max_iters=3, eval_interval=1000), progress=False)
    assert losses(tmp_path / "compiled") == losses(tmp_path / "eager")


def test_a_backend_error_at_the_first_call_warns_and_trains_eager_without_a_trace(tmp_path, monkeypatch,
                                                                                  capsys):
    class Failing(torch.nn.Module):
        """What torch.compile returns when its backend breaks: it fails when first trained."""

        def __init__(self, model):
            super().__init__()
            self.model = model

        def forward(self, x, y):
            out = self.model(x, y)  # draws dropout masks and moves the weights' graph...
            if self.training:
                raise RuntimeError("InductorError: the backend exploded\nmore lines")
            return out

    monkeypatch.setattr(device, "cpp_compiler", lambda: "/usr/bin/g++")
    monkeypatch.setattr(torch, "compile", Failing)
    settings = dict(max_iters=4, eval_interval=2, dropout=0.1, dtype="float64")
    train(tiny(tmp_path / "compiled", compile="on", **settings), progress=False)
    out = capsys.readouterr().out
    assert ("warning: --compile failed (RuntimeError: InductorError: the backend exploded); "
            "training eager") in out
    monkeypatch.undo()
    train(tiny(tmp_path / "eager", **settings), progress=False)
    assert losses(tmp_path / "compiled") == losses(tmp_path / "eager")  # ...and none of it stayed


# ----------------------------------------------------------------------------- the GPU check


def gpu_check():
    spec = importlib.util.spec_from_file_location("gpu_check", ROOT / "bench" / "gpu_check.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_gpu_check_runs_on_the_cpu_in_quick_mode(capsys):
    assert gpu_check().main(["--device", "cpu", "--quick"]) == 0
    out = capsys.readouterr().out
    rows = [line for line in out.splitlines() if line.startswith("| ") and "---" not in line][1:]
    assert [r.split(" | ")[0] for r in rows] == ["| train speed"] * 3 + ["| train"] * 3 + ["| sample"] * 2 + [
        "| attribution"]
    assert "+ rotary positions" in rows[4] and "+ cosine down to 0" in rows[5]  # each change alone
    val = float(out.split("val ")[1].split()[0])
    assert math.isfinite(val) and "chars/s" in out and "ms/character" in out


def test_gpu_check_without_cuda_is_one_line_and_status_2(monkeypatch, capsys):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert gpu_check().main([]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: no CUDA GPU") and err.count("\n") == 1
