"""How values read in tables, the terminal's and the HTML report's alike: numbers, ages, nested dicts."""

from __future__ import annotations

from typing import Any, Mapping


def fmt(v: Any) -> str:
    """A table cell: ints with thousands separators, floats to 5-6 significant digits, None as '-'."""
    if v is None:
        return "-"
    if isinstance(v, bool):
        return str(v).lower()
    if isinstance(v, float):
        if v == 0:
            return "0"
        if not 1e-3 <= abs(v) < 1e6:
            return f"{v:.3e}"
        return f"{v:.6g}" if abs(v) < 1 else f"{v:,.5g}"
    if isinstance(v, int):
        return f"{v:,}"
    return str(v)


def first_line(e: BaseException) -> str:
    """An exception's first line (its type's name if it has no message): what a one-line error quotes."""
    text = str(e).strip() or type(e).__name__
    return text.splitlines()[0].strip()


def flatten(d: Mapping, prefix: str = "") -> dict[str, Any]:
    """{"a": {"b": 1}} -> {"a.b": 1}, for tables."""
    out: dict[str, Any] = {}
    for k, v in d.items():
        if isinstance(v, Mapping):
            out.update(flatten(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def age(seconds: float | None) -> str:
    """How long ago, in the largest unit that fits: '40s', '12m', '3h', '5d'."""
    if seconds is None:
        return "-"
    s = max(0, int(seconds))
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if s >= size:
            return f"{s // size}{unit}"
    return f"{s}s"
