"""A lecture opened alone sets itself up: copied by itself into an empty folder and run in a fresh
virtual environment where Jupyter and the course's dependencies can be imported but the course's
package cannot, its first cell installs the package from NANOGPT_COURSE_SOURCE (pointed at a copy
of this checkout) and the lecture then runs clean in smoke mode. Inside the clone the same cell
does nothing (every other lecture test runs it there)."""

import json
import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
LECTURE = ROOT / "lectures" / "solutions" / "00_micrograd.ipynb"
DRIVER = """
import sys, nbformat
from nbclient import NotebookClient
nb = nbformat.read(sys.argv[1], as_version=4)
NotebookClient(nb, timeout=600, resources={"metadata": {"path": sys.argv[2]}}).execute()
nbformat.write(nb, sys.argv[1])
"""


@pytest.mark.skipif(sys.platform == "win32", reason="the venv's layout below is POSIX's")
def test_a_lecture_alone_installs_the_course_and_runs(tmp_path):
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, capture_output=True)
    python = venv / "bin" / "python"
    where = "import sysconfig; print(sysconfig.get_paths()['purelib'])"
    site = Path(subprocess.run([str(python), "-c", where], capture_output=True, text=True,
                               check=True).stdout.strip())
    # this environment's packages as a plain path: its editable nanogpt (a finder loaded by a
    # .pth file of its own) does not come with them
    (site / "course_dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    source = tmp_path / "checkout"  # a copy: pip builds inside the folder it installs from
    shutil.copytree(ROOT / "nanogpt", source / "nanogpt", ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, source / name)
    work = tmp_path / "work"
    work.mkdir()
    shutil.copy(LECTURE, work / LECTURE.name)
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env.update(NANOGPT_COURSE_SOURCE=str(source), NANOGPT_SMOKE="1")
    assert subprocess.run([str(python), "-c", "import nanogpt"], cwd=work, capture_output=True,
                          env=env).returncode != 0
    done = subprocess.run([str(python), "-c", DRIVER, str(work / LECTURE.name), str(work)], cwd=work,
                          env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    cells = json.loads((work / LECTURE.name).read_text())["cells"]
    first_cell = next(c for c in cells if c["cell_type"] == "code")
    first = "".join("".join(o.get("text", "")) for o in first_cell["outputs"])
    assert f"installing the course from {source}" in first and "mode: smoke" in first
    installed = subprocess.run([str(python), "-c", "import nanogpt; print(nanogpt.__file__)"],
                               cwd=work, capture_output=True, text=True, env=env).stdout
    assert installed.startswith(str(site))
