"""Paths given by a person, folders that must take files, and writes that a crash cannot half-do.

- ``local_path``: ``~`` is expanded; an empty string (which would mean the current folder) and a
  URL (``http://...``) are refused with the fix.
- ``check_writable``: the folder exists or can be made and takes a file, checked before any work.
- ``atomic_write``: a temporary file in the same folder, flushed and fsync-ed, then ``os.replace``:
  a crash mid-write leaves the previous file intact. Temporaries of killed writers are removed.
- ``shipped_path``: where the course's shipped files (``data/``) are: the clone's ``data/`` folder,
  or the folder named by the environment variable ``DIFFGAN_DATA``.
"""
from __future__ import annotations

import os
import re
from pathlib import Path

__all__ = ["local_path", "check_writable", "atomic_write", "remove_stale_temporaries", "pid_alive",
           "shipped_path", "is_shipped", "DATA_ENV"]

_URL = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")
_TMP = re.compile(r"\.(.+)\.(\d+)\.tmp")      # what atomic_write names its temporary files
DATA_ENV = "DIFFGAN_DATA"
# shipped files that were renamed to say what they are: the old name still finds the file
RENAMED_SHIPPED = {"phantoms32_default_10k.pth": "phantoms32_hybrid_10k.pth", "xray32_default_4ep.pth": "xray32_pure_4ep.pth"}
_CLONE_DATA = Path(__file__).resolve().parents[2] / "data"


def local_path(value, what: str = "path") -> Path:
    """``value`` as a local Path with ``~`` expanded; ValueError for "" or a URL, naming ``what``."""
    text = str(value)
    if not text.strip():
        raise ValueError(f"{what} is empty, which would silently mean the current folder; give the path "
                         "explicitly (use '.' for the current folder)")
    if _URL.match(text):
        raise ValueError(f"{what} {text} is a URL; diffgan_lib reads local files only: download it first "
                         f"(e.g. curl -LO {text}) and pass the local path")
    path = Path(text).expanduser()
    if not path.exists() and path.name in RENAMED_SHIPPED and (path.parent / RENAMED_SHIPPED[path.name]).exists():
        return path.parent / RENAMED_SHIPPED[path.name]
    return path


def shipped_path(relative: str, must_exist: bool = True) -> Path:
    """A file the course ships under ``data/`` (e.g. "pretrained/phantoms32_pure_10k.pth"): in the folder
    named by $DIFFGAN_DATA when set, else in the clone's data/ folder. When neither has it:
    FileNotFoundError (one line saying where to put it), or with ``must_exist=False`` the first place
    looked at."""
    roots = ([Path(os.environ[DATA_ENV]).expanduser()] if os.environ.get(DATA_ENV) else []) + [_CLONE_DATA]
    for root in roots:
        if (root / relative).exists():
            return root / relative
    if not must_exist:
        return roots[0] / relative
    raise FileNotFoundError(f"the course file data/{relative} was not found in {' or '.join(map(str, roots))}: "
                            f"copy the repository's data/ folder somewhere and set {DATA_ENV} to it")


def is_shipped(path) -> bool:
    """Whether ``path`` lies in a folder where the course's shipped files belong (the clone's data/, $DIFFGAN_DATA)."""
    roots = ([Path(os.environ[DATA_ENV]).expanduser()] if os.environ.get(DATA_ENV) else []) + [_CLONE_DATA]
    path = Path(path).expanduser().absolute()
    return any(path.is_relative_to(root.absolute()) for root in roots)


def _probe(folder: Path) -> None:
    """Create and delete a small file in ``folder`` (OSError if the folder does not take files)."""
    probe = folder / f".write_test.{os.getpid()}.tmp"
    fd = os.open(probe, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)
    os.close(fd)
    probe.unlink()


def check_writable(folder, what: str = "--out", create: bool = True) -> Path:
    """Prove that ``folder`` takes files (made if missing when ``create``); ValueError naming the problem
    and the fix. Refused: a file given as the folder, a path below a file, a folder that cannot be made
    or written. With ``create=False`` a missing folder is checked through its nearest existing parent
    and is not made (so a command that fails later leaves no empty folder behind)."""
    folder = local_path(folder, what)
    if folder.exists() and not folder.is_dir():
        raise ValueError(f"{what} {folder} is a file, not a folder; give a folder (it is created if missing)")
    above = next((p for p in folder.parents if p.exists() and not p.is_dir()), None)
    if above is not None:
        raise ValueError(f"{what} {folder} lies below {above}, which is a file; give a folder path")
    try:
        if create or folder.exists():
            folder.mkdir(parents=True, exist_ok=True)
            _probe(folder)
        else:
            _probe(next(p for p in folder.parents if p.exists()))
    except OSError as err:
        raise ValueError(f"{what} {folder} cannot be written ({err.strerror or err}): it is read-only or "
                         f"not yours; choose another {what}") from None
    return folder


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


def remove_stale_temporaries(folder: Path) -> list[Path]:
    """Delete ``.{name}.{pid}.tmp`` files in ``folder`` left by writes that were killed (their pid is gone)."""
    gone = []
    for p in Path(folder).glob(".*.tmp"):
        m = _TMP.fullmatch(p.name)
        if m and int(m.group(2)) != os.getpid() and not pid_alive(int(m.group(2))):
            p.unlink(missing_ok=True)
            gone.append(p)
    return gone


def atomic_write(path, write) -> Path:
    """Call ``write(file)`` on a temporary file beside ``path``, fsync it, then rename it over ``path``.

    Temporary files of earlier writes into the same folder whose process is gone are removed first.
    A full disk raises OSError naming ``path`` and saying that the earlier file there is intact.
    """
    path = Path(path)
    remove_stale_temporaries(path.parent)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as err:
        tmp.unlink(missing_ok=True)
        if isinstance(err, OSError) and err.errno == 28 or "unexpected pos" in str(err):
            raise OSError(28, f"no space left on the device while writing {path}; the earlier {path.name} "
                              "there (if any) is intact: free some space and run again") from None
        raise
    if os.name == "posix":   # make the rename itself durable
        fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
    return path
