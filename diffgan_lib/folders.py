"""Where runs and samples write: paths, one run per folder, a lock against two writers, no mixing.

The rules (README, "Folders, interrupts and exit codes"):

- ``local_path``: a path given by a person: ``~`` is expanded; an empty string (which would mean
  the current folder) and a URL (``http://...``) are refused with the fix.
- ``check_writable``: the folder exists or can be made and takes a file, checked before any work.
- One run, one folder: ``check_run_folder`` refuses a folder that holds another run's checkpoints
  (``run_files``) unless the run resumes from a file in that folder, or ``overwrite`` is asked
  for; ``clear_run`` then deletes that run's files. ``FolderLock`` (``train.lock``, holding the
  pid) keeps a second writer out while a run trains.
- ``retire_final``: a ``final_model.pth`` older than the state a run stops at is renamed
  ``final_model_step_N.pth``, so it never looks like the end of the run that was interrupted.
- ``clear_sample_outputs`` removes what an earlier ``sample`` wrote into a folder;
  ``split_course_outputs`` sets apart the files diffgan_lib wrote, so loaders never train on them.

Under torchrun only rank 0 calls the functions that touch files (``training.train`` does).
"""
from __future__ import annotations

import os
import re
import socket
import warnings
from pathlib import Path

__all__ = ["local_path", "check_writable", "run_files", "check_run_folder", "clear_run", "FolderLock",
           "pid_alive", "retire_final", "clear_sample_outputs", "split_course_outputs", "LOCK_NAME"]

LOCK_NAME = "train.lock"
RUN_NAMES = ("final_model.pth", "interrupted.pth", "last.pth")
RUN_PATTERNS = (re.compile(r"epoch_\d+\.pth"), re.compile(r"final_model_step_\d+\.pth"))
SAMPLE_IMAGE = re.compile(r"sample_\d{3,}\.png")
TRAINING_GRID = re.compile(r"step_\d{6}\.png")
_URL = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")


# ------------------------------------------------------------------------------------------ paths
def local_path(value, what: str = "path") -> Path:
    """``value`` as a local Path with ``~`` expanded; ValueError for "" or a URL, naming ``what``."""
    if isinstance(value, Path):
        return value.expanduser()
    text = str(value)
    if not text.strip():
        raise ValueError(f"{what} is empty, which would silently mean the current folder; give the path "
                         "explicitly (use '.' for the current folder)")
    if _URL.match(text):
        raise ValueError(f"{what} {text} is a URL; diffgan_lib reads local files only: download it first "
                         f"(e.g. curl -LO {text}) and pass the local path")
    return Path(text).expanduser()


def _probe(folder: Path) -> None:
    """Create and delete a small file in ``folder`` (OSError if the folder does not take files)."""
    probe = folder / f".write_test.{os.getpid()}.tmp"
    fd = os.open(probe, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)
    os.close(fd)
    probe.unlink()


def check_writable(folder, what: str = "--out") -> Path:
    """Make ``folder`` if needed and prove that it takes files; ValueError naming the problem and the fix.

    Refused: a file given as the folder, a path below a file, a folder that cannot be made or written.
    """
    folder = local_path(folder, what)
    if folder.exists() and not folder.is_dir():
        raise ValueError(f"{what} {folder} is a file, not a folder; give a folder (it is created if missing)")
    above = next((p for p in folder.parents if p.exists() and not p.is_dir()), None)
    if above is not None:
        raise ValueError(f"{what} {folder} lies below {above}, which is a file; give a folder path")
    try:
        folder.mkdir(parents=True, exist_ok=True)
        _probe(folder)
    except OSError as err:
        raise ValueError(f"{what} {folder} cannot be written ({err.strerror or err}): it is read-only or "
                         f"not yours; choose another {what}") from None
    return folder


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


def check_run_folder(folder, resume=None, overwrite: bool = False) -> list[Path]:
    """What must go before a run may write into ``folder``: [] when nothing, else the old run's files
    (only with ``overwrite``). ValueError when the folder holds another run and ``overwrite`` is off.

    Continuing the run whose checkpoint ``resume`` lies in ``folder`` is always allowed (and never
    deletes anything); so is any run into an empty folder.
    """
    folder = Path(folder)
    found = run_files(folder)
    if not found or _resumes_here(folder, resume):
        return []
    if overwrite:
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
    from .checkpoints import read_checkpoint
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
def pid_alive(pid: int) -> bool:
    """Whether process ``pid`` exists on this machine."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:          # exists, owned by someone else
        return True
    except OSError:
        return False
    return True


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


# ----------------------------------------------------------------------------------------- samples
def clear_sample_outputs(folder) -> int:
    """Delete what ``sample`` wrote into ``folder`` before (grid.png, samples.npy, images/sample_NNN.png),
    nothing else; returns how many images went."""
    folder = Path(folder)
    images = [p for p in (folder / "images").glob("sample_*.png") if SAMPLE_IMAGE.fullmatch(p.name)]
    for p in [folder / "grid.png", folder / "samples.npy", *images]:
        p.unlink(missing_ok=True)
    return len(images)


def _course_output(p: Path) -> bool:
    """Whether ``p`` is an image written by diffgan_lib: a sample folder's grid.png or images/sample_NNN.png
    (beside samples.npy), or a training folder's samples/step_NNNNNN.png (beside history.json)."""
    if p.name == "grid.png":
        return (p.parent / "samples.npy").is_file()
    if p.parent.name == "images" and SAMPLE_IMAGE.fullmatch(p.name):
        return (p.parent.parent / "samples.npy").is_file()
    if p.parent.name == "samples" and TRAINING_GRID.fullmatch(p.name):
        return (p.parent.parent / "history.json").is_file()
    return False


def split_course_outputs(files: list[Path]) -> tuple[list[Path], list[Path]]:
    """(files to read, files diffgan_lib wrote itself: samples and training grids, never training data)."""
    outputs = [p for p in files if _course_output(p)]
    skip = set(outputs)
    return [p for p in files if p not in skip], outputs
