"""The package as a reader meets it: the files one training step runs through, and lines by role.

    .venv/bin/python bench/package_map.py                   # this checkout
    .venv/bin/python bench/package_map.py --root ../old     # another checkout (git worktree add)

It trains the smoke preset for one step in a child process (cwd and PYTHONPATH at --root) and
records every function of the package that runs from `main()` up to the first
`optimizer.step()`: the files a reader following `make train` to `optimizer.step()` could land in.
Those the training loop reaches through one named call for a job that is not the algorithm
(NAMED below: precision, Muon, the time budget, Ctrl-C, checkpoints, torchrun, logging, the
command line, the tokenizer) are listed apart; the rest is the reading path. Then the package's lines by role.
"""

from __future__ import annotations

import argparse
import ast
import json
import subprocess
import sys
import tempfile
from pathlib import Path

# The modules the loop calls through one named line for a job that is not the algorithm (both
# layouts' names; a module missing from a layout is simply not found there).
NAMED = {
    "cli": "the command line's error wrapper", "errors": "the error type",
    "precision": "bfloat16 autocast", "device": "the device and --compile", "optim": "Muon beside AdamW",
    "budget": "--max-minutes", "interrupt": "Ctrl-C", "checkpoint": "atomic saves, exact resume",
    "distributed": "torchrun", "runlog": "what a run prints and writes", "runfolder": "the run folder",
    "datasets": "finding and verifying the text", "models": "the table of stages",
    "checks": "the settings' checks", "flags": "the command line's flags",
    "tokenizer": "characters to ids (lecture 01)",
}
PLUMBING = {"cli", "checks", "flags", "errors", "device", "precision", "distributed", "interrupt", "budget",
            "runlog", "runfolder", "checkpoint", "datasets", "models", "run", "runtime", "__main__",
            "__init__"}

DRIVER = r"""
import json, sys, tempfile
root = sys.argv[1]
seen, done = {}, [False]
def profile(frame, event, arg):
    if done[0] or event != "call":
        return
    code = frame.f_code
    if code.co_name == "step" and "torch/optim" in code.co_filename.replace("\\", "/"):
        done[0] = True
    elif code.co_filename.startswith(root + "/nanogpt/"):
        seen.setdefault(code.co_filename[len(root) + 1:], set()).add(code.co_name)
import nanogpt.train
sys.setprofile(profile)
with tempfile.TemporaryDirectory() as out:
    nanogpt.train.main(["--preset", "smoke", "--max-iters", "1", "--eval-interval", "1000",
                        "--device", "cpu", "--out-dir", out])
sys.setprofile(None)
print(json.dumps({k: sorted(v) for k, v in seen.items()}))
"""


def lines(path: Path) -> int:
    return len(path.read_text(encoding="utf-8").splitlines())


def role(rel: str) -> str:
    parts = Path(rel).with_suffix("").parts  # nanogpt/x or nanogpt/sub/x
    if len(parts) > 2 and parts[1] == "course" or parts[-1] in ("notebooks", "exercises", "ladder"):
        return "course machinery"
    if "diagnostics" in parts[-1] or "attribut" in parts[-1] or parts[1] in ("diagnostics", "attribution"):
        return "lenses"
    return "plumbing" if parts[-1] in PLUMBING else "subject"


def longest_function(root: Path) -> tuple[int, str]:
    best = (0, "")
    for path in sorted((root / "nanogpt").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                n = node.end_lineno - node.lineno + 1
                best = max(best, (n, f"{path.relative_to(root)}:{node.name}"))
    return best


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--root", default=str(Path(__file__).resolve().parents[1]), help="the checkout to map")
    args = p.parse_args(argv)
    root = Path(args.root).resolve()
    with tempfile.TemporaryDirectory():
        done = subprocess.run([sys.executable, "-c", DRIVER, str(root)], cwd=root, capture_output=True,
                              text=True, env={**__import__("os").environ, "PYTHONPATH": str(root)})
    if done.returncode:
        print(done.stderr[-2000:], file=sys.stderr)
        return 1
    seen = json.loads(done.stdout.strip().splitlines()[-1])
    path_files = {f: lines(root / f) for f in seen if Path(f).stem not in NAMED}
    named = {f: lines(root / f) for f in seen if Path(f).stem in NAMED}
    print(f"## {root.name}: `make train` to the first optimizer.step()\n")
    print(f"every file that runs: {len(seen)} files, {sum(lines(root / f) for f in seen):,} lines\n")
    print("| the reading path | lines | functions that run |\n|---|---:|---|")
    for f, n in sorted(path_files.items()):
        print(f"| {f} | {n} | {', '.join(seen[f])} |")
    print(f"| **{len(path_files)} files** | **{sum(path_files.values()):,}** | |\n")
    print("| behind one named call | lines | for |\n|---|---:|---|")
    for f, n in sorted(named.items()):
        print(f"| {f} | {n} | {NAMED[Path(f).stem]} |")
    by_role: dict[str, list[int]] = {}
    for path in sorted((root / "nanogpt").rglob("*.py")):
        by_role.setdefault(role(str(path.relative_to(root))), []).append(lines(path))
    print("\n| role | files | lines |\n|---|---:|---:|")
    for name in ("subject", "lenses", "plumbing", "course machinery"):
        counts = by_role.get(name, [])
        print(f"| {name} | {len(counts)} | {sum(counts):,} |")
    n, where = longest_function(root)
    print(f"\nlongest function: {where}, {n} lines")
    return 0


if __name__ == "__main__":
    sys.exit(main())
