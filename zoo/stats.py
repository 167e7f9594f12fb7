"""The statistics of a comparison report, in plain Python: Student's t distribution, confidence intervals of a
mean over seeds, and the paired t-test of two models run on the same seeds.

No scipy (not a dependency): for the integer degrees of freedom a report needs (seeds - 1), the t
distribution's two-sided probability has a finite closed form (Abramowitz & Stegun 26.7.3-4), exact to
rounding, and quantiles come from it by bisection.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass

from zoo.registry import ZooError

__all__ = ["PairedTest", "mean_ci", "paired_t_test", "t_quantile", "t_two_sided"]


def _check_df(df: int) -> None:
    if not isinstance(df, int) or isinstance(df, bool) or df < 1:
        raise ZooError(f"degrees of freedom must be a whole number >= 1 (seeds - 1), got {df!r}")


def t_two_sided(t: float, df: int) -> float:
    """P(|T| <= |t|) for Student's t with ``df`` degrees of freedom: 0 at t = 0, towards 1 as |t| grows.

    A&S 26.7.3-4 with theta = atan(|t| / sqrt(df)): a sum of ``df // 2`` terms, so exact for any df the report
    meets (one term per two seeds), where a table would stop at 30 and a normal approximation be off for few.
    """
    _check_df(df)
    if math.isinf(t):
        return 1.0
    theta = math.atan(abs(t) / math.sqrt(df))
    s, c2 = math.sin(theta), math.cos(theta) ** 2
    if df % 2 == 0:  # sin(theta) * (1 + 1/2 c^2 + 1*3/(2*4) c^4 + ... up to c^(df-2))
        term = total = 1.0
        for k in range(1, df // 2):
            term *= c2 * (2 * k - 1) / (2 * k)
            total += term
        return min(1.0, s * total)
    total = 0.0  # odd: 2/pi * (theta + sin cos (1 + 2/3 c^2 + 2*4/(3*5) c^4 + ... up to c^(df-3)))
    if df > 1:
        term = total = 1.0
        for k in range(1, (df - 1) // 2):
            term *= c2 * (2 * k) / (2 * k + 1)
            total += term
    return min(1.0, 2 / math.pi * (theta + s * math.cos(theta) * total))


def t_quantile(p: float, df: int) -> float:
    """The ``p`` quantile of Student's t with ``df`` degrees of freedom (``t_quantile(0.975, 2)`` = 4.303)."""
    _check_df(df)
    if not 0 < p < 1:
        raise ZooError(f"a quantile needs 0 < p < 1, got {p!r}")
    if p == 0.5:
        return 0.0
    coverage = abs(2 * p - 1)  # P(|T| <= q) for the upper quantile q
    lo, hi = 0.0, 1.0
    while t_two_sided(hi, df) < coverage:  # df=1, p=0.9995: q = 636.6
        hi *= 2
    for _ in range(200):  # bisection to float precision: the CDF is monotone, no derivative needed
        mid = (lo + hi) / 2
        if mid in (lo, hi):
            break
        lo, hi = (mid, hi) if t_two_sided(mid, df) < coverage else (lo, mid)
    q = (lo + hi) / 2
    return q if p > 0.5 else -q


def mean_ci(values: Sequence[float], *, level: float = 0.95) -> tuple[float, float] | None:
    """The ``level`` confidence interval of the mean of ``values`` (one per seed): mean +/- t * std / sqrt(n),
    Student's t with n - 1 degrees of freedom. None for fewer than two values: one seed says nothing of spread."""
    n = len(values)
    if n < 2:
        return None
    mean = statistics.fmean(values)
    half = t_quantile(0.5 + level / 2, n - 1) * statistics.stdev(values) / math.sqrt(n)
    return mean - half, mean + half


@dataclass(frozen=True)
class PairedTest:
    """A paired t-test of two models over the seeds both ran: the difference a - b per seed."""

    n: int  # shared seeds
    mean_diff: float  # mean of a - b
    t: float
    p: float  # two-sided

    def significant(self, alpha: float = 0.05) -> bool:
        return self.p < alpha


def paired_t_test(a: Sequence[float], b: Sequence[float]) -> PairedTest | None:
    """Two-sided paired t-test of ``a[i]`` against ``b[i]`` (the same seed's result for two models).

    Pairing by seed removes what a seed does to every model alike (its data order, its split), so it sees
    differences an unpaired test would call noise. None for fewer than two pairs. Identical differences on
    every seed (no spread) give p = 1 if they are all 0, else p = 0.
    """
    if len(a) != len(b):
        raise ZooError(f"a paired test needs one value of each model per seed: got {len(a)} and {len(b)}")
    n = len(a)
    if n < 2:
        return None
    diffs = [x - y for x, y in zip(a, b, strict=True)]
    mean, sd = statistics.fmean(diffs), statistics.stdev(diffs)
    if sd == 0:
        return PairedTest(n, mean, 0.0 if mean == 0 else math.copysign(math.inf, mean), 1.0 if mean == 0 else 0.0)
    t = mean / (sd / math.sqrt(n))
    return PairedTest(n, mean, t, 1.0 - t_two_sided(t, n - 1))
