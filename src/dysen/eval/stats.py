"""Standard errors of the benchmark's scores, with the clip (or prompt) as the sampled unit.

A clip's events share its seed, its plan and its video, so they are not independent draws: a share pooled over the
events of many clips (action accuracy) gets the ratio estimator's standard error over clips, not the binomial one
over events. Means over clips (object fidelity, order accuracy) get the standard error of the mean.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np


def standard_error(values: Iterable[float | None]) -> float | None:
    """Standard error of the mean of the values given (None skipped): sample standard deviation / sqrt(n); None
    under two values."""
    present = [v for v in values if v is not None]
    return float(np.std(present, ddof=1) / np.sqrt(len(present))) if len(present) > 1 else None


def pooled_standard_error(hits_per_unit: Sequence[Sequence[bool]]) -> float | None:
    """Standard error of a share pooled over the events of many units (clips, prompts), the units being the
    sampled ones: sqrt(sum_i (h_i - p n_i)^2 / (N (N - 1))) / mean(n_i), the ratio estimator's (Cochran 1977,
    eq. 6.9), with h_i the hits and n_i the events of unit i. With one event a unit it is the standard error of
    the mean over units. None under two units with events."""
    groups = [(sum(h), len(h)) for h in hits_per_unit if len(h)]
    if len(groups) < 2:
        return None
    hits, counts = np.array(groups, dtype=float).T  # [N], [N]
    share = hits.sum() / counts.sum()
    n = len(groups)
    return float(np.sqrt(np.sum((hits - share * counts) ** 2) / (n * (n - 1))) / counts.mean())
