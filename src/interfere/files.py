"""Writing files so that a reader never sees half of one: a temporary sibling, then one rename; and values
turned into plain JSON on the way."""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any, Mapping


def atomic_write_text(path: str | os.PathLike, text: str, encoding: str = "utf-8") -> Path:
    """Write `text` to `path` through a hidden temporary file in the same folder (so the rename is atomic)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")  # plain open(): the umask sets the mode
    try:
        tmp.write_text(text, encoding=encoding)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def atomic_write_json(path: str | os.PathLike, obj: Any, indent: int | None = 1) -> Path:
    """`obj` as strict JSON (see jsonable) through atomic_write_text."""
    return atomic_write_text(path, json.dumps(jsonable(obj), indent=indent, allow_nan=False) + "\n")


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
