# SPDX-License-Identifier: BSD-3-Clause
"""Small statistics helpers (no numpy needed)."""
import statistics


def median(xs):
    xs = [x for x in xs if x is not None]
    return statistics.median(xs) if xs else None


def mmm(xs):
    """(median, min, max) of the values that are not None."""
    xs = [x for x in xs if x is not None]
    if not xs:
        return None, None, None
    return statistics.median(xs), min(xs), max(xs)


def fmt(v, nd=2):
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:.{nd}f}"
    return str(v)


def fmt_mmm(t, nd=2, unit=""):
    m, lo, hi = t
    if m is None:
        return "-"
    if lo == hi:
        return f"{m:.{nd}f}{unit}"
    return f"{m:.{nd}f}{unit} ({lo:.{nd}f}-{hi:.{nd}f})"
