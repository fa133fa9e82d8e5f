"""The two statistics the parts share: a marginal rate and a percentile."""

from __future__ import annotations

import numpy as np


def marginal(sizes: tuple[int, int], seconds: tuple[float, float]) -> float:
    return (sizes[1] - sizes[0]) / max(seconds[1] - seconds[0], 1e-9)


def pct(values: list[float], q: float) -> float | None:
    if not values:
        return None
    return float(np.percentile(values, q))
