"""Training noise in the comparison's intervals, when the candidate was trained with several seeds.

A model is one draw of its recipe: train it again with another seed and its metrics move. With
`compare.seeds: N` the verdict is about the recipe, as Bouthillier et al. ("Accounting for Variance
in Machine Learning Benchmarks", MLSys 2021) recommend: each bootstrap resample draws the
evaluation rows (paired, as without seeds) and also N of the candidate's seeds with replacement,
and takes their mean; the baseline, one published model, is one draw of its own recipe, so each
resample also adds one draw of the baseline's seed deviation. That deviation comes from the
per-seed metrics the baseline's artifact recorded (its metrics.json); a baseline that recorded none
is taken to be as noisy as the candidate, and the comparison says so. The interval then holds
the rows' sampling, the candidate's seed noise (shrunk by N) and the baseline's, and a candidate
that differs from the baseline by its seed alone is not called worse.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

Array = NDArray[np.float64]
ASSUMED = ("the baseline recorded no seeds (published with compare.seeds 1), so its training noise is taken to be "
           "the candidate's")


@dataclass(frozen=True)
class SeedNoise:
    """The per-seed deviations that the comparison adds for the baseline, per metric, and where they came from."""

    seeds: int  # the candidate's seeds
    candidate_values: dict[str, list[float | None]]  # each metric's value per seed, the published model's first
    baseline_deviations: dict[str, Array]
    baseline_seeds: int  # how many seeds the baseline recorded; 0: none, the candidate's noise stands in
    note: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {"seeds": self.seeds, "candidate": self.candidate_values, "baseline_seeds": self.baseline_seeds,
                "note": self.note,
                "baseline_std": {name: float(np.sqrt(np.mean(d ** 2))) for name, d in self.baseline_deviations.items()}}


def deviations(values: list[float | None]) -> Array:
    """One model's deviation from its recipe's mean, as `values` (each seed's metric) sample it: centred and
    scaled by sqrt(n / (n - 1)), so that a draw's variance is the seeds' sample variance."""
    found = np.array([v for v in values if v is not None and np.isfinite(v)], dtype=np.float64)
    if len(found) < 2:
        return np.zeros(1)
    return np.asarray((found - found.mean()) * np.sqrt(len(found) / (len(found) - 1)), dtype=np.float64)


def seed_noise(seeds: int, candidate: dict[str, list[float | None]],
               baseline: dict[str, Any] | None) -> SeedNoise:
    """`candidate`: each metric's value per candidate seed; `baseline`: the `seeds` part of the baseline's
    metrics.json, or None."""
    recorded = (baseline or {}).get("metrics", {})
    found = {name: deviations(recorded[name]["values"]) if name in recorded else deviations(values)
             for name, values in candidate.items()}
    if baseline is None:
        return SeedNoise(seeds, candidate, found, 0, ASSUMED)
    missing = sorted(set(candidate) - set(recorded))
    note = (f"the baseline recorded no seeds for {', '.join(missing)}, so there its training noise is taken to be "
            "the candidate's") if missing else None
    return SeedNoise(seeds, candidate, found, len(baseline.get("seeds", [])), note)


def recipe_differences(per_seed: Array, baseline: Array, deviation: Array, rng: np.random.Generator) -> Array:
    """Each resample's difference of the recipes: the mean of N of the candidate's seeds drawn with replacement
    (`per_seed`: seeds by resamples, each seed's metric on the resample's rows) minus the baseline's recipe on
    the same rows: its metric there less its own deviation from its recipe, of which one draw is taken."""
    seeds, resamples = per_seed.shape
    drawn = rng.integers(0, seeds, (seeds, resamples))
    mean = np.take_along_axis(per_seed, drawn, axis=0).mean(axis=0)
    return np.asarray(mean - (baseline - rng.choice(deviation, resamples)))
