"""`python -m nanogpt`: one command line for every job, the environment check, and the device
choice with the device faked (MPS and CUDA each take their own path, never the CPU's by mistake)."""

import importlib
import re
import subprocess
from pathlib import Path

import pytest
import torch

from nanogpt import __main__ as entry
from nanogpt import datasets
from nanogpt.config import default_preset
from nanogpt.course import doctor
from nanogpt.device import pick_compile, pick_device
from nanogpt.precision import pick_dtype

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def fast_device(monkeypatch):
    """The one-second matmul replaced by its verdict: these tests are about the other items."""
    monkeypatch.setattr(doctor, "device_item", lambda: doctor.Item(True, "device", "cpu (not measured)"))


def lines_of(capsys) -> list[str]:
    return capsys.readouterr().out.splitlines()


def test_a_healthy_clone_is_all_ok(capsys, tmp_path):
    assert doctor.main(["--runs", str(tmp_path / "runs")]) == 0
    out = lines_of(capsys)
    assert out[-1].endswith(" ok") and "FAIL" not in "\n".join(out)
    assert any(line.startswith("ok    device: ") and "GFLOP/s" in line for line in out)
    assert any(line.startswith("what the device changes: ") for line in out)


def test_a_missing_data_file_fails_with_its_fix(capsys, tmp_path, monkeypatch, fast_device):
    monkeypatch.setattr(datasets, "DATA_DIR", tmp_path / "data")
    monkeypatch.setenv("NANOGPT_DATA_DIR", str(tmp_path / "env"))
    assert doctor.main(["--runs", str(tmp_path / "runs")]) == 1
    out = lines_of(capsys)
    i = out.index(next(line for line in out if line.startswith("FAIL  data names.txt: not found in ")))
    assert out[i + 1] == "      fix: python -m nanogpt data (make data)"
    assert out[-1].endswith("; 2 to fix")


def test_a_corrupted_data_file_fails_with_its_fix(capsys, tmp_path, monkeypatch, fast_device):
    monkeypatch.setenv("NANOGPT_DATA_DIR", str(tmp_path))
    (tmp_path / "names.txt").write_text("not the names\n")
    assert doctor.main(["--runs", str(tmp_path / "runs")]) == 1
    out = lines_of(capsys)
    i = out.index(f"FAIL  data names.txt: {tmp_path / 'names.txt'} has the wrong sha256 (corrupted)")
    assert out[i + 1] == f"      fix: delete {tmp_path / 'names.txt'}, then python -m nanogpt data"


def test_no_jupyter_fails_with_its_fix(capsys, tmp_path, monkeypatch, fast_device):
    real = importlib.util.find_spec
    monkeypatch.setattr(doctor.importlib.util, "find_spec",
                        lambda name, *a: None if name in ("nbclient", "jupyterlab") else real(name, *a))
    assert doctor.main(["--runs", str(tmp_path / "runs")]) == 1
    out = "\n".join(lines_of(capsys))
    assert "FAIL  jupyter: nbclient, nbformat, ipykernel; missing: nbclient" in out
    assert "FAIL  jupyter lab: not installed\n      fix: pip install jupyterlab" in out


def test_an_unwritable_run_folder_fails_with_its_fix(capsys, tmp_path, fast_device):
    (tmp_path / "runs").write_text("a file where the runs folder should be")
    assert doctor.main(["--runs", str(tmp_path / "runs")]) == 1
    out = "\n".join(lines_of(capsys))
    assert f"FAIL  run folder: {tmp_path / 'runs'}: cannot write there" in out


# ----------------------------------------------------------------------------- python -m nanogpt


def test_every_command_leads_to_a_main_with_help(capsys):
    for name, (module, first, _) in entry.COMMANDS.items():
        if module is None:
            continue
        with pytest.raises(SystemExit) as e:
            importlib.import_module(module).main([*first, "--help"])
        assert e.value.code == 0, name
        out = capsys.readouterr().out
        assert "usage:" in out
        # every default said once, none as "None"
        flat = " ".join(out.split())
        assert "(default: None)" not in flat, name
        assert not re.search(r"default[^-]*\(default:", flat), name


def test_no_command_prints_the_list_and_an_unknown_one_is_one_line(capsys):
    assert entry.main([]) == 0 and "commands:" in capsys.readouterr().out
    assert entry.main(["trian"]) == 2
    assert capsys.readouterr().err.startswith("error: no command 'trian' (commands: doctor, data, train")


def test_the_makefile_targets_run_the_same_commands():
    commands = ["train", "sample", "attribute", "data", "doctor", "check", "exercises"]
    dry = subprocess.run(["make", "-n", *commands], cwd=ROOT, capture_output=True, text=True).stdout
    for command in commands:
        assert f"-m nanogpt {command}" in dry, command


# ----------------------------------------------------------------------------- the device, faked


def fake(monkeypatch, cuda: bool, mps: bool):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: cuda)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda: True)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: mps)


def test_on_cuda_the_course_takes_the_gpu_preset_bfloat16_and_compile(monkeypatch):
    fake(monkeypatch, cuda=True, mps=False)
    assert pick_device() == "cuda" and default_preset() == "gpt-gpu"
    assert pick_dtype("auto", "cuda") == "bfloat16" and pick_compile("auto", "cuda")


def test_on_mps_the_course_takes_float32_without_compile_and_the_cpu_preset(monkeypatch):
    fake(monkeypatch, cuda=False, mps=True)
    assert pick_device() == "mps" and default_preset() == "gpt-cpu"
    assert pick_dtype("auto", "mps") == "float32" and not pick_compile("auto", "mps")
    assert "float32 only" in doctor.DEVICE_NOTES["mps"] and "PYTORCH_ENABLE_MPS_FALLBACK" in \
        doctor.DEVICE_NOTES["mps"]


def test_on_a_cpu_nothing_of_cuda_or_mps_is_taken(monkeypatch):
    fake(monkeypatch, cuda=False, mps=False)
    assert pick_device() == "cpu" and default_preset() == "gpt-cpu" and not pick_compile("auto", "cpu")
