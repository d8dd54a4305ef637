"""Training noise in the comparison's intervals, when the candidate was trained with several seeds.

A model is one draw of its recipe: train it again with another seed and its metrics move. With
`compare.seeds: N` the verdict on a metric is about the candidate's recipe, as Bouthillier et al.
("Accounting for Variance in Machine Learning Benchmarks", MLSys 2021) recommend, against the
baseline, which is one published model: one draw of its own recipe. Each bootstrap draw of the
difference is

    (the mean over the candidate's N seeds of the metric on the resample's rows − the baseline's
     metric on the same rows) + sqrt(s_c²/N + s_b²) · T

where the first part is the rows' sampling (paired, as without seeds), s_c² is the sample variance
of the candidate's seeds' metric on all the evaluation rows, s_b² the sample variance of the M seeds
the baseline recorded when it was published (its metrics.json `seeds`), and T is Student's t with
the Welch–Satterthwaite degrees of freedom

    (s_c²/N + s_b²)² / ((s_c²/N)² / (N − 1) + s_b⁴ / (M − 1)),

so that variances estimated from 2 or 3 seeds are not taken as known. A baseline that recorded no
seeds (or fewer than two) is taken to be as noisy as the candidate: s_b² = s_c², with N − 1 degrees
of freedom, and the comparison says so.

Assumed: the seed's effect on a metric is roughly normal and adds to the rows' sampling (a seed
shifts the metric as a whole; Bouthillier et al. find the seed and the rows' sampling the main and
separable sources of variance); both recipes' seed variances are measured on the same evaluation
rows; the candidate's seeds, the baseline's seeds and the rows are independent. The seeds' own
sampling of the rows is in s_c² and s_b² as well as in the first part, which makes the draws a
little wider, never narrower. A candidate that differs from the baseline by its seed alone then
fails a no-regression rule at about the interval's one-sided level, not more.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from numpy.typing import NDArray

Array = NDArray[np.float64]
ASSUMED = ("the baseline recorded no seeds (published with compare.seeds 1), so in the metrics' intervals its "
           "training noise is taken to be the candidate's")


def sample_variance(values: list[float | None]) -> tuple[float, int]:
    """The sample variance (n − 1) of the finite values, and how many there are; NaN with fewer than two."""
    found = np.array([v for v in values if v is not None and math.isfinite(v)], dtype=np.float64)
    return (float(found.var(ddof=1)) if len(found) > 1 else math.nan), len(found)


@dataclass(frozen=True)
class MetricNoise:
    """One metric's training noise: the candidate's seeds' variance, the baseline's, and the t term's degrees of
    freedom."""

    candidate_variance: float  # s_c²
    seeds: int  # N: the candidate's seeds with the metric defined
    baseline_variance: float  # s_b²: the baseline's recorded seeds', or s_c² when it recorded none
    baseline_seeds: int  # M: the baseline's recorded seeds with the metric defined; 0 when s_b² is s_c²

    @property
    def variance(self) -> float:
        """The variance that training adds to the difference of the recipes: s_c²/N + s_b²."""
        return self.candidate_variance / max(self.seeds, 1) + self.baseline_variance

    @property
    def df(self) -> float:
        """Welch–Satterthwaite's degrees of freedom; N − 1 when s_b² is s_c² (one variance, from N seeds)."""
        if self.baseline_seeds < 2:
            return float(max(self.seeds - 1, 1))
        shrunk = self.candidate_variance / self.seeds
        spread = shrunk ** 2 / (self.seeds - 1) + self.baseline_variance ** 2 / (self.baseline_seeds - 1)
        # NOTE: no spread at all (every seed alike) leaves nothing for the t term to scale: any df will do
        return (shrunk + self.baseline_variance) ** 2 / spread if spread > 0 else float(max(self.seeds - 1, 1))

    def draws(self, resamples: int, rng: np.random.Generator) -> Array:
        """`resamples` draws of the training noise: sqrt(s_c²/N + s_b²) · T, T ~ t(df); NaN when undefined."""
        if not math.isfinite(self.variance):
            return np.full(resamples, math.nan)
        return np.asarray(math.sqrt(self.variance) * rng.standard_t(self.df, resamples), dtype=np.float64)

    def to_json(self) -> dict[str, Any]:
        def sd(variance: float) -> float | None:
            return math.sqrt(variance) if math.isfinite(variance) else None
        return {"candidate_sd": sd(self.candidate_variance), "baseline_sd": sd(self.baseline_variance),
                "baseline_assumed": self.baseline_seeds < 2, "df": self.df if math.isfinite(self.variance) else None}


@dataclass(frozen=True)
class SeedNoise:
    """The training noise the comparison counts, per metric, and where the baseline's came from."""

    seeds: int  # the candidate's seeds
    candidate_values: dict[str, list[float | None]]  # each metric's value per seed, the published model's first
    metrics: dict[str, MetricNoise] = field(default_factory=dict)
    baseline_seeds: int = 0  # how many seeds the baseline recorded; 0: none, the candidate's noise stands in
    note: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {"seeds": self.seeds, "candidate": self.candidate_values, "baseline_seeds": self.baseline_seeds,
                "note": self.note, "noise": {name: found.to_json() for name, found in self.metrics.items()}}


def _metric_noise(values: list[float | None], recorded: list[float | None] | None) -> MetricNoise:
    candidate, seeds = sample_variance(values)
    baseline, baseline_seeds = sample_variance(recorded or [])
    if baseline_seeds < 2:
        return MetricNoise(candidate, seeds, candidate, 0)
    return MetricNoise(candidate, seeds, baseline, baseline_seeds)


def seed_noise(seeds: int, candidate: dict[str, list[float | None]], baseline: dict[str, Any] | None,
               compared: bool = True) -> SeedNoise:
    """`candidate`: each metric's value per candidate seed; `baseline`: the `seeds` part of the baseline's
    metrics.json, or None; `compared`: whether there is a baseline at all (without one, nothing is said of it)."""
    recorded = (baseline or {}).get("metrics", {})
    found = {name: _metric_noise(values, recorded.get(name, {}).get("values")) for name, values in candidate.items()}
    assumed = [name for name, noise in found.items() if noise.baseline_seeds < 2]
    note = None
    if compared and assumed:
        note = ASSUMED if len(assumed) == len(found) else (
            f"the baseline recorded no seeds for {', '.join(assumed)}, so in their intervals its training noise "
            "is taken to be the candidate's")
    return SeedNoise(seeds, candidate, found, len((baseline or {}).get("seeds", [])), note)


def recipe_differences(per_seed: Array, baseline: Array, noise: MetricNoise, rng: np.random.Generator) -> Array:
    """Each resample's difference of the recipes (see the module's docstring). `per_seed`: seeds by resamples,
    each candidate seed's metric on the resample's rows; `baseline`: the baseline's metric on the same rows."""
    return np.asarray(per_seed.mean(axis=0) - baseline + noise.draws(per_seed.shape[1], rng), dtype=np.float64)
