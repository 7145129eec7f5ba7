"""Small text helpers of the comparison's prose and tables: counts in words, p-values, intervals, markdown."""
from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd


def num(value: Any) -> float:
    """A number or NaN: null, missing, text and infinities are NaN, never 0."""
    try:
        out = float(value)
    except (TypeError, ValueError):
        return math.nan
    return out if math.isfinite(out) else math.nan


def interval(lo: float, hi: float, signed: bool = True, digits: int = 3) -> str:
    """`[lo, hi]` at `digits` decimals (signed: with +/-), or "no interval" when either end is missing."""
    if not (math.isfinite(num(lo)) and math.isfinite(num(hi))):
        return "no interval"
    form = f"{{:{'+' if signed else ''}.{digits}f}}"
    # + 0.0 turns a bound that rounds to zero from "-0.0" into "+0.0"
    return f"[{form.format(round(lo, digits) + 0.0)}, {form.format(round(hi, digits) + 0.0)}]"


def plural(count: int, noun: str) -> str:
    return f"{count} {noun}{'' if count == 1 else 's'}"


def fmt_p(p: float) -> str:
    p = num(p)
    return "n/a" if not math.isfinite(p) else ("< 0.001" if p < 0.001 else f"{p:.3g}")


def markdown_table(frame: pd.DataFrame) -> list[str]:
    """A small markdown table (no index) of strings and numbers (3 decimals)."""
    if frame.empty:
        return []

    def text(v: Any) -> str:
        return f"{v:.3f}" if isinstance(v, (float, np.floating)) and math.isfinite(v) else (
            "n/a" if isinstance(v, (float, np.floating)) else str(v).replace("|", "/"))
    lines = ["| " + " | ".join(map(str, frame.columns)) + " |", "|" + "---|" * len(frame.columns)]
    lines += ["| " + " | ".join(text(v) for v in row) + " |" for row in frame.itertuples(index=False)]
    return lines
