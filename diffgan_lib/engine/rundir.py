"""The run folder: one run per folder, a lock against two writers, and the end-of-run file rules.

The rules (docs/cli.md, "Folders, interrupts and exit codes"):
- One run, one folder: ``check_run_folder`` refuses a folder that holds another run's checkpoints
  (``run_files``) unless the run resumes from a file in that folder, or ``overwrite`` is asked
  for; ``clear_run`` then deletes that run's files -- never a file the same command reads.
- ``FolderLock`` (``train.lock``, holding the pid) keeps a second writer out while a run trains.
- ``check_final_not_longer``: a run never replaces a longer run's ``final_model.pth`` unasked.
- ``retire_final``: a ``final_model.pth`` older than the state a run stops at is renamed
  ``final_model_step_N.pth``, so it never looks like the end of the run that was interrupted.
``RunDir`` bundles them for the loop. Under torchrun only rank 0 touches files.
"""
from __future__ import annotations

import json
import math
import os
import re
import socket
import warnings
from pathlib import Path

from ..data.files import atomic_write, check_writable, local_path, pid_alive
from .models import read_checkpoint

__all__ = ["RunDir", "run_files", "check_run_folder", "clear_run", "FolderLock", "retire_final",
           "check_final_not_longer", "final_step", "save_history_json", "LOCK_NAME"]

LOCK_NAME = "train.lock"
RUN_NAMES = ("final_model.pth", "interrupted.pth", "last.pth")
RUN_PATTERNS = (re.compile(r"epoch_\d+\.pth"), re.compile(r"final_model_step_\d+\.pth"))
TRAINING_GRID = re.compile(r"step_\d{6}\.png")


# ------------------------------------------------------------------------------- one run, one folder
def run_files(folder) -> list[Path]:
    """The checkpoints of a training run in ``folder`` (final, interrupted, last, epoch_*, final_model_step_*)."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.iterdir() if p.is_file() and
                  (p.name in RUN_NAMES or any(r.fullmatch(p.name) for r in RUN_PATTERNS)))


def _names(paths, limit: int = 4) -> str:
    names = [p.name for p in paths]
    return ", ".join(names[:limit]) + (f" and {len(names) - limit} more" if len(names) > limit else "")


def _resumes_here(folder: Path, resume) -> bool:
    return resume is not None and Path(resume).expanduser().resolve().parent == folder.resolve()


def check_run_folder(folder, resume=None, overwrite: bool = False, reads=()) -> list[Path]:
    """What must go before a run may write into ``folder``: [] when nothing, else the old run's files
    (only with ``overwrite``). ValueError when the folder holds another run and ``overwrite`` is off.

    Continuing the run whose checkpoint ``resume`` lies in ``folder`` is always allowed (and never
    deletes anything); so is any run into an empty folder. ``overwrite`` never deletes ``resume`` or a
    file in ``reads`` (a teacher, say): ValueError instead.
    """
    folder = Path(folder)
    found = run_files(folder)
    if not found or _resumes_here(folder, resume):
        return []
    if overwrite:
        read = {Path(p).expanduser().resolve() for p in (resume, *reads) if p is not None}
        kept = [p for p in found if p.resolve() in read]
        if kept:
            raise ValueError(f"--overwrite would delete {_names(kept)} in {folder}, which this command reads; "
                             "write the new run into another folder (--out / save_dir)")
        return found
    newest = next((p for p in found if p.name in ("interrupted.pth", "last.pth", "final_model.pth")), found[-1])
    raise ValueError(f"{folder} already holds another run's checkpoints ({_names(found)}); continue that run "
                     f"with --resume {newest} (library: resume=...), or pass --overwrite (overwrite=True) to "
                     "delete them and start afresh, or choose another folder (--out / save_dir)")


def clear_run(folder, files: list[Path], say=print) -> None:
    """Delete an old run's checkpoints ``files``, its history.json and its training grids (samples/step_*.png)."""
    folder = Path(folder)
    extra = [folder / "history.json"] if (folder / "history.json").is_file() else []
    grids = sorted(p for p in (folder / "samples").glob("step_*.png") if TRAINING_GRID.fullmatch(p.name))
    for p in [*files, *extra, *grids]:
        p.unlink(missing_ok=True)
    say(f"overwrite: deleted the earlier run in {folder} ({_names(files + extra)}"
        + (f", {len(grids)} training grids" if grids else "") + ")")


def final_step(path) -> int | None:
    """The step count of checkpoint ``path``, or None when it cannot be read."""
    try:
        return int(read_checkpoint(path)["step"])
    except (OSError, ValueError):
        return None


def check_final_not_longer(folder, last_step, overwrite: bool = False) -> None:
    """Refuse to end a run at ``last_step`` where ``final_model.pth`` already ends one at a later step."""
    final = Path(folder) / "final_model.pth"
    if overwrite or not final.is_file() or last_step is None or last_step == float("inf"):
        return
    old = final_step(final)
    if old is not None and old > last_step:
        raise ValueError(f"{final} ends a run at step {old}, but this run stops at step {int(last_step)} and would "
                         f"replace it with a shorter one; raise --epochs / --max-steps past {old}, write elsewhere "
                         "(--out / save_dir), or pass --overwrite (overwrite=True) to replace it")


def retire_final(folder, say=print) -> Path | None:
    """Rename ``final_model.pth`` to ``final_model_step_N.pth`` (N its step) so that it is not taken for
    the end of a run stopped later; returns the new path (None when there was no final file)."""
    final = Path(folder) / "final_model.pth"
    if not final.is_file():
        return None
    step = final_step(final)
    new = final.with_name(f"final_model_step_{step if step is not None else 'unknown'}.pth")
    os.replace(final, new)
    say(f"note: renamed the earlier {final.name} to {new.name} (step {step}): it is not the end of this run")
    return new


# ------------------------------------------------------------------------------------------- lock
class FolderLock:
    """``folder/train.lock``, created with O_CREAT | O_EXCL and holding "pid host": one writer at a time.

    A lock whose process is gone (same host, pid not alive) is taken over with a warning; a live one
    refuses with a ValueError naming the pid. ``release`` removes the file if it is still ours.
    """

    def __init__(self, folder):
        self.path, self.held = Path(folder) / LOCK_NAME, False

    def _owner(self) -> tuple[int | None, str]:
        try:
            pid, host = (self.path.read_text().split() + ["", ""])[:2]
            return int(pid), host
        except (OSError, ValueError):
            return None, ""

    def acquire(self) -> "FolderLock":
        me = f"{os.getpid()} {socket.gethostname()}\n"
        for _ in range(3):
            try:
                fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                pid, host = self._owner()
                if pid is not None and host == socket.gethostname() and not pid_alive(pid):
                    warnings.warn(f"{self.path} was left by process {pid}, which is no longer running (killed?); "
                                  "taking the folder over", stacklevel=3)
                    if self._owner() == (pid, host):     # still the same stale lock
                        self.path.unlink(missing_ok=True)
                    continue
                who = f"process {pid} on {host}" if pid is not None else "another process"
                raise ValueError(f"{self.path.parent} is in use by another training run ({who}, lock file "
                                 f"{self.path}); wait for it to end or choose another folder (--out / save_dir); "
                                 "if that run is gone, delete the lock file") from None
            with os.fdopen(fd, "w") as f:
                f.write(me)
            self.held = True
            return self
        raise ValueError(f"could not take the lock {self.path}; delete it if no run is using the folder")

    def release(self) -> None:
        if self.held and self._owner()[0] == os.getpid():
            self.path.unlink(missing_ok=True)
        self.held = False


def save_history_json(history: dict, save_dir) -> Path:
    """Write the per-step history as ``history.json`` (NaN as null) for plotting; returns its path."""
    clean = {k: [None if isinstance(v, float) and not math.isfinite(v) else v for v in vals]
             for k, vals in history.items()}
    return atomic_write(Path(save_dir) / "history.json", lambda f: f.write(json.dumps(clean).encode()))


class RunDir:
    """The folder of one run: checked, locked while the run trains, and its end-of-run rules.

    ``RunDir(path, resume, overwrite, reads)``: ``open()`` proves the folder takes files, takes the lock
    and finds what an overwrite must clear (nothing is deleted yet); ``prepare(last_step)`` refuses a
    shorter final over a longer one and only then clears the old run; ``save(run, name)`` writes a
    checkpoint and history.json; ``end(run, stopped)`` writes final_model.pth or interrupted.pth.
    """

    def __init__(self, path, resume=None, overwrite: bool = False, reads=(), what: str = "save_dir"):
        self.path = local_path(path, what)
        self.resume, self.overwrite, self.reads, self.what = resume, overwrite, reads, what
        self.lock, self.old = FolderLock(self.path), []

    def open(self) -> "RunDir":
        check_writable(self.path, self.what)
        self.lock.acquire()
        try:
            self.old = check_run_folder(self.path, self.resume, self.overwrite, self.reads)
        except BaseException:
            self.lock.release()
            raise
        return self

    def close(self) -> None:
        self.lock.release()

    def prepare(self, last_step) -> None:
        check_final_not_longer(self.path, last_step, self.overwrite)
        if self.old:
            clear_run(self.path, self.old)
            self.old = []

    def save(self, run, name: str) -> Path:
        path = run.save(self.path / name)
        save_history_json(run.history, self.path)
        return path

    def end(self, run, stopped: bool, say=print) -> Path:
        """interrupted.pth after a stop, else final_model.pth. An earlier final_model.pth that is not this
        run's end (a stop came later, or it is longer and nobody said overwrite) becomes final_model_step_N.pth."""
        if stopped or not self.overwrite and (final_step(self.path / "final_model.pth") or 0) > run.step:
            retire_final(self.path, say=say)
        return self.save(run, "interrupted.pth" if stopped else "final_model.pth")
