"""Atomic file writes, kept free of audio/text imports so training on a bare GPU box can use them."""
from __future__ import annotations

import os
import re
import tempfile
from pathlib import Path


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


# mkstemp makes 0600 files; written results (wavs, manifests, parts) get the usual 0666 & ~umask
FILE_MODE = 0o666 & ~_umask()


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Write to a temp file in the same folder, then rename: readers never see half a file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.fchmod(fd, FILE_MODE)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def cache_root() -> Path:
    """`$CODECTTS_CACHE`, else `$XDG_CACHE_HOME/codectts`, else `~/.cache/codectts`."""
    if env := os.environ.get("CODECTTS_CACHE"):
        return Path(env).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base).expanduser() / "codectts"


def fsync_dir(path: str | os.PathLike) -> None:
    """Flush a directory's entries (a rename inside it) to disk; a no-op where directories cannot be opened."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def fsync_tree(path: str | os.PathLike) -> None:
    """Flush every file and folder under `path` (and `path`) to disk, so a rename of it after a crash or
    power loss never points at half-written files."""
    root = Path(path)
    for p in sorted(root.rglob("*"), key=lambda q: -len(q.parts)):  # files before the folders holding them
        if p.is_file():
            with open(p, "rb") as f:
                os.fsync(f.fileno())
        elif p.is_dir():
            fsync_dir(p)
    fsync_dir(root)


_STALE = re.compile(r"^\.(?P<name>.+)\.old-(?P<pid>\d+)$|^\.(?:.+\.)?tmp-(?P<tpid>\d+)-")


def _pid_alive(pid: int) -> bool:
    if pid == os.getpid():
        return False  # a leftover of an earlier process that had our PID: we have written nothing yet
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def recover_stale(folder: str | os.PathLike) -> list[str]:
    """Clean what a killed writer left in `folder`: temp folders `.NAME.tmp-PID-*` / `.tmp-PID-*` are deleted;
    `.NAME.old-PID` is renamed back to NAME when NAME is missing (the kill fell between the two renames of
    `replace_dir`), else deleted. Only leftovers of processes that are gone; returns what was done."""
    import shutil

    folder = Path(folder)
    done: list[str] = []
    if not folder.is_dir():
        return done
    for p in sorted(folder.iterdir()):
        m = _STALE.match(p.name)
        if m is None or _pid_alive(int(m["pid"] or m["tpid"])):
            continue
        if m["name"] is not None and not (folder / m["name"]).exists():
            os.replace(p, folder / m["name"])
            done.append(f"restored {m['name']} from {p.name}")
        else:
            if p.is_dir():
                shutil.rmtree(p, ignore_errors=True)
            else:
                p.unlink(missing_ok=True)
            done.append(f"removed {p.name}")
    if done:
        fsync_dir(folder)
    return done
