"""The package as an ordinary install: a wheel built from the clone (not an editable install),
installed into a folder of its own, run from another folder. It trains and samples with and
without NANOGPT_DATA_DIR; without it, the data is looked for in a user data folder, never inside
the installed package; and the course's own commands say in one line where they looked for
lectures/."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("NANOGPT_DATA_DIR", ROOT / "data"))


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    """The package built as a wheel and installed (no dependencies: they are this venv's) into
    site/, so that `import nanogpt` there finds the installed copy, not the clone."""
    if not (SHARED / "tinyshakespeare.txt").is_file():
        pytest.skip("no Tiny Shakespeare to train on")
    tmp = tmp_path_factory.mktemp("install")
    source = tmp / "source"  # a copy: building writes build/ and *.egg-info beside the sources
    shutil.copytree(ROOT / "nanogpt", source / "nanogpt", ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, source / name)
    build = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation",
                            "-q", "-w", str(tmp / "wheel"), str(source)], capture_output=True, text=True)
    assert build.returncode == 0, build.stderr[-2000:]
    wheel = next((tmp / "wheel").glob("*.whl"))
    install = subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "-q", "--target",
                              str(tmp / "site"), str(wheel)], capture_output=True, text=True)
    assert install.returncode == 0, install.stderr[-2000:]
    return tmp


def run(tmp, *args, data_dir=None, home="home"):
    """`python -m <args>` in tmp/work, importing the installed copy; HOME and XDG_DATA_HOME inside tmp."""
    env = {k: v for k, v in os.environ.items() if k not in ("NANOGPT_DATA_DIR", "XDG_DATA_HOME")}
    env.update(PYTHONPATH=str(tmp / "site"), HOME=str(tmp / home), NANOGPT_OFFLINE="1",
               XDG_DATA_HOME=str(tmp / home / ".local" / "share"))
    if data_dir is not None:
        env["NANOGPT_DATA_DIR"] = str(data_dir)
    (tmp / "work").mkdir(exist_ok=True)
    return subprocess.run([sys.executable, "-m", *args], cwd=tmp / "work", env=env, capture_output=True,
                          text=True, timeout=300)


def test_the_installed_copy_is_the_one_imported_and_holds_every_subpackage(installed):
    done = run(installed, "nanogpt.attribution.cli", "--help")
    assert done.returncode == 0, done.stderr
    where = run(installed, "nanogpt.train", "--help")
    assert where.returncode == 0
    site = installed / "site"
    files = {p.relative_to(site).as_posix() for p in (site / "nanogpt").rglob("*.py")}
    assert {"nanogpt/train.py", "nanogpt/diagnostics/monitor.py", "nanogpt/attribution/views.py",
            "nanogpt/course/exercises.py"} <= files


def test_train_and_sample_with_the_data_folder_named(installed):
    out = installed / "work" / "run-env"
    done = run(installed, "nanogpt.train", "--preset", "smoke", "--max-iters", "20", "--eval-interval", "10",
               "--out-dir", str(out), data_dir=SHARED)
    assert done.returncode == 0, done.stderr[-2000:]
    sample = run(installed, "nanogpt.sample", "--ckpt", str(out / "best.pt"), "--max-new-tokens", "30",
                 data_dir=SHARED)
    assert sample.returncode == 0 and sample.stdout.strip(), sample.stderr[-2000:]


def test_without_the_variable_the_data_is_looked_for_in_a_user_folder_not_the_package(installed):
    missing = run(installed, "nanogpt.train", "--preset", "smoke", "--max-iters", "2", "--out-dir", "x",
                  home="empty-home")
    assert missing.returncode == 2 and missing.stderr.count("\n") == 1  # one line: not found, offline
    assert str(installed / "empty-home" / ".local" / "share" / "nanogpt") in missing.stderr
    user_data = installed / "home" / ".local" / "share" / "nanogpt"
    user_data.mkdir(parents=True, exist_ok=True)
    shutil.copy(SHARED / "tinyshakespeare.txt", user_data / "tinyshakespeare.txt")
    done = run(installed, "nanogpt.train", "--preset", "smoke", "--max-iters", "20", "--eval-interval", "10",
               "--out-dir", "run-home")
    assert done.returncode == 0, done.stderr[-2000:]
    assert not list((installed / "site").rglob("tinyshakespeare.txt"))  # nothing inside the install
    sample = run(installed, "nanogpt.sample", "--ckpt", "run-home/best.pt", "--max-new-tokens", "20")
    assert sample.returncode == 0, sample.stderr[-2000:]


def test_the_course_commands_outside_a_clone_say_where_they_looked(installed):
    done = run(installed, "nanogpt.course.exercises", "check", "01")
    assert done.returncode == 2 and done.stderr.count("\n") == 1
    assert done.stderr.startswith("error: no lectures in ") and "clone" in done.stderr
