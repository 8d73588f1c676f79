"""A run's folder: one live run writes it at a time, and a fresh run never loses an earlier one.

    folder = RunFolder.claim(out)     # a .lock naming this process; a dead run's lock is taken over
    moved = folder.archive_earlier()  # a fresh run, once it has started: the earlier run's files
                                      # move into out/previous/<time>/, nothing is overwritten
    folder.release()

Claiming also removes what a killed save left behind (`.last.pt.*.tmp`): with the lock held, no
live process is writing them.
"""

from __future__ import annotations

import os
import socket
import sys
import tempfile
import time
from pathlib import Path

from nanogpt.errors import UserError

LOCK = ".lock"
# What a run (and the commands run on it) write into its folder: what a fresh run moves aside.
RUN_FILES = ("*.pt", "metrics.jsonl", "*.png", "diagnostics.npz", "health.txt", "attribution.*")


def process_alive(pid: int) -> bool:
    """Whether a process with this id is running on this machine."""
    if pid == os.getpid():
        return True
    if sys.platform == "win32":  # os.kill(pid, 0) would send Ctrl-C there
        import ctypes

        handle = ctypes.windll.kernel32.OpenProcess(0x1000, False, pid)  # query limited information
        if not handle:
            return False
        code = ctypes.c_ulong()
        ctypes.windll.kernel32.GetExitCodeProcess(handle, ctypes.byref(code))
        ctypes.windll.kernel32.CloseHandle(handle)
        return code.value == 259  # STILL_ACTIVE
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, and someone else's
        return True
    return True


class RunFolder:
    """A run folder held by this process (its .lock names the process)."""

    def __init__(self, path: Path):
        self.path = path

    @classmethod
    def claim(cls, path) -> RunFolder:
        """Make the folder, check it is writable, and lock it; a one-line UserError when it cannot
        be, or when a live run holds it."""
        path = Path(path)
        try:
            path.mkdir(parents=True, exist_ok=True)
            with tempfile.TemporaryFile(dir=path):
                pass
        except FileExistsError:
            raise UserError(f"--out-dir {path}: a file of that name exists; the run needs a folder") from None
        except NotADirectoryError:
            raise UserError(f"--out-dir {path}: part of that path is a file, not a folder") from None
        except OSError as e:
            raise UserError(f"--out-dir {path}: cannot write there ({e.strerror or e})") from None
        folder = cls(path)
        folder._lock()
        for tmp in path.glob(".*.tmp"):  # a save killed mid-write; the finished file is intact
            tmp.unlink(missing_ok=True)
        return folder

    def _lock(self) -> None:
        lock = self.path / LOCK
        mine = f"{os.getpid()} {socket.gethostname()}\n"
        for _ in range(2):
            try:
                fd = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
            except FileExistsError:
                self._take_over_if_stale(lock)
                continue
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                f.write(mine)
            return
        raise UserError(f"--out-dir {self.path}: could not lock it (another run keeps taking it)")

    def _take_over_if_stale(self, lock: Path) -> None:
        try:
            pid_text, _, host = lock.read_text(encoding="utf-8").strip().partition(" ")
            pid = int(pid_text)
        except (OSError, ValueError):  # empty or half-written: the writer died at once
            lock.unlink(missing_ok=True)
            return
        if host and host != socket.gethostname():
            raise UserError(f"--out-dir {self.path}: a run on {host} (process {pid}) holds it; if that "
                            f"run is gone, delete {lock}")
        if pid != os.getpid() and process_alive(pid):
            raise UserError(f"--out-dir {self.path}: another run (process {pid}) is writing there; "
                            "wait for it, stop it, or choose another --out-dir")
        lock.unlink(missing_ok=True)  # a killed run's lock (or this process's own, from before)

    def archive_earlier(self) -> str | None:
        """Move an earlier run's files into previous/<time>/ (a new, unique folder); returns that
        folder, or None when there was nothing to move."""
        found = sorted({p for pattern in RUN_FILES for p in self.path.glob(pattern) if p.is_file()})
        if not found:
            return None
        stamp = time.strftime("%Y-%m-%d_%H-%M-%S", time.localtime(max(p.stat().st_mtime for p in found)))
        target, n = self.path / "previous" / stamp, 1
        while target.exists():
            n += 1
            target = self.path / "previous" / f"{stamp}_{n}"
        target.mkdir(parents=True)
        for p in found:
            os.replace(p, target / p.name)  # the same file system: a rename, nothing copied
        return str(target)

    def release(self) -> None:
        """Unlock the folder (only if this process holds it)."""
        lock = self.path / LOCK
        try:
            if lock.read_text(encoding="utf-8").split(" ")[0] == str(os.getpid()):
                lock.unlink()
        except OSError:
            pass
