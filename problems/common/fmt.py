"""Numbers as the results' texts and the report print them: one format per kind, a dash when missing."""
from __future__ import annotations

import math

DASH = "\u2014"


def is_missing(x) -> bool:
    """None, NaN or an infinity: printed as a dash."""
    return x is None or (isinstance(x, float) and not math.isfinite(x))


def fmt_pct(x, digits: int = 1) -> str:
    """A fraction as a percentage: 0.6756 -> '67.6%'."""
    return DASH if is_missing(x) else f"{100 * float(x):.{digits}f}%"


def fmt_f(x, digits: int = 3) -> str:
    """A number with fixed decimals; missing or not finite -> a dash."""
    if is_missing(x):
        return DASH
    if isinstance(x, (int, float)):
        return f"{float(x):.{digits}f}"
    return str(x)


def fmt_g(x) -> str:
    """A number in its shortest form (lr 0.02, eps 1)."""
    if is_missing(x):
        return DASH
    if isinstance(x, bool):
        return "yes" if x else "no"
    if isinstance(x, (int, float)):
        return f"{x:g}"
    return str(x)


def fmt_int(x) -> str:
    """An integer with thousands separators: 1048576 -> '1,048,576'."""
    return DASH if is_missing(x) else f"{int(x):,}"


def fmt_sci(x) -> str:
    """Small probabilities: 3 decimals when >= 0.001, else scientific."""
    if is_missing(x):
        return DASH
    return f"{x:.3f}" if abs(x) >= 1e-3 or x == 0 else f"{x:.1e}"


def fmt_vec(v, digits: int = 2) -> str:
    """A vector or matrix in brackets, numbers shortest-form (hand weights) or rounded (learned)."""
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(fmt_vec(e, digits) for e in v) + "]"
    if is_missing(v):
        return DASH
    r = round(float(v), digits)
    return f"{r:g}" if r != int(r) or abs(r) > 1e6 else f"{int(r)}"


def fmt_text(x) -> str:
    """A results field meant as text: None -> dash, a list -> '; '-joined."""
    if x is None:
        return DASH
    if isinstance(x, (list, tuple)):
        return "; ".join(fmt_text(e) for e in x)
    if isinstance(x, bool):
        return "yes" if x else "no"
    return str(x)


def plural(n, word: str, many: str | None = None) -> str:
    return f"{fmt_int(n)} {word if n == 1 else (many or word + 's')}"
