"""Writing files so that a reader never sees half of one (a temporary sibling, then one rename), values turned
into plain JSON on the way, and what to tell a user whose disk refused a write."""

from __future__ import annotations

import contextlib
import errno
import json
import math
import os
import shutil
from pathlib import Path
from typing import Any, Iterator, Mapping


@contextlib.contextmanager
def atomic_write(path: str | os.PathLike, *, directory: bool = False, keep_existing: bool = False,
                 fsync: bool = False) -> Iterator[Path]:
    """Yield a hidden temporary sibling of `path` to write (a fresh empty folder with directory=True); when the
    block ends it is renamed onto `path` in one step, and on any error it is removed: nothing half-written stays.

    The sibling sits in the same folder (so the rename is atomic) and keeps the suffix (ffmpeg and Pillow pick
    the format by it). keep_existing: a cache several processes may build at once; if `path` exists by the
    end, it is kept (the same content) and ours dropped. fsync: data and names reach the disk before and after
    the rename, so that a crash leaves the old or the new version whole (checkpoints).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = _sibling(path, "tmp")
    _remove(tmp)
    if directory:
        tmp.mkdir()
    try:
        yield tmp
        if keep_existing and path.exists():
            return
        if fsync:
            for f in tmp.iterdir() if directory else ():
                _fsync(f)
            _fsync(tmp)
        _replace(tmp, path)
        if fsync:
            _fsync(path.parent)
    except OSError as e:
        if e.filename is None:  # a short write names no file: name the one being written
            raise OSError(e.errno, e.strerror, str(path)) from None
        raise
    finally:
        _remove(tmp)


def atomic_write_text(path: str | os.PathLike, text: str, encoding: str = "utf-8", fsync: bool = False) -> Path:
    with atomic_write(path, fsync=fsync) as tmp:
        tmp.write_text(text, encoding=encoding)  # plain open(): the umask sets the mode
    return Path(path)


def atomic_write_json(path: str | os.PathLike, obj: Any, indent: int | None = 1, fsync: bool = False) -> Path:
    """`obj` as strict JSON (see jsonable) through atomic_write."""
    return atomic_write_text(path, json.dumps(jsonable(obj), indent=indent, allow_nan=False) + "\n", fsync=fsync)


def atomic_symlink(link: str | os.PathLike, target: str) -> None:
    """Point `link` at `target` (relative) in one rename, so that readers never see it missing."""
    link = Path(link)
    tmp = _sibling(link, "tmp")
    _remove(tmp)
    os.symlink(target, tmp)
    os.replace(tmp, link)


def _sibling(path: Path, kind: str) -> Path:
    return path.with_name(f".{path.stem}.{os.getpid()}.{kind}{path.suffix}")


def _replace(tmp: Path, path: Path) -> None:
    """os.replace, also onto an existing folder (moved aside first, then deleted)."""
    if not (tmp.is_dir() and path.is_dir() and not path.is_symlink()):
        os.replace(tmp, path)
        return
    old = _sibling(path, "old")
    _remove(old)
    os.replace(path, old)
    os.replace(tmp, path)
    _remove(old)


def _remove(p: Path) -> None:
    if p.is_dir() and not p.is_symlink():
        shutil.rmtree(p, ignore_errors=True)
    elif p.is_symlink() or p.exists():
        p.unlink(missing_ok=True)


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def cache_dir() -> Path:
    """Where caches live (tokenized corpora, tokenizers, converted pretrained models): $INTERFERE_CACHE, else
    ~/.cache/interfere."""
    return Path(os.environ.get("INTERFERE_CACHE") or "~/.cache/interfere").expanduser()


# ----- when the disk says no ---------------------------------------------------------------------------
_WHY = {errno.ENOSPC: "the disk is full", errno.EDQUOT: "the disk quota is used up",
        errno.EROFS: "the file system is read-only", errno.EACCES: "permission denied",
        errno.EPERM: "permission denied", errno.EEXIST: "a file stands where a folder is needed",
        errno.ENOTDIR: "a file stands where a folder is needed"}


def os_problem(e: OSError, elsewhere: str) -> str:
    """One line for a refused read or write: the path, why, and `elsewhere` (how to write somewhere else)."""
    where = e.filename if e.filename is not None else "a file"
    if e.errno not in _WHY:
        return f"{where}: {e.strerror or e}"
    fix = "free some space, or " if e.errno in (errno.ENOSPC, errno.EDQUOT) else ""
    return f"cannot write {where}: {_WHY[e.errno]}; {fix}{elsewhere}"


def jsonable(x: Any) -> Any:
    """Plain JSON types: tensors and numpy scalars to numbers, paths to strings, nan/inf to null."""
    if isinstance(x, Mapping):
        return {str(k): jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [jsonable(v) for v in x]
    if isinstance(x, Path):
        return str(x)
    if hasattr(x, "tolist") and not isinstance(x, (str, bytes)):
        return jsonable(x.tolist())  # tensors and numpy arrays/scalars
    if isinstance(x, float) and not math.isfinite(x):
        return None
    return x
