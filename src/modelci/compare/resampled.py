"""Every task metric over many bootstrap resamples at once.

A block of resamples holds the rows each resample drew and how often it drew each row. Each
metric is prepared once per model, then evaluated on whole blocks: the averaged metrics are a
matrix product of the counts with a per-row quantity; the rank metrics (ROC AUC, average
precision) count each resample's draws between the model's distinct positive scores, which needs
no sort per resample. The result equals the metric on each resample's drawn rows (tested against `metrics.FUNCTIONS`),
at a fraction of the cost of a Python loop over resamples.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
from numpy.typing import NDArray

from modelci.evaluate.metrics import _EPS, DEFAULT_THRESHOLD, _positive, decided, top_k_hits

Array = NDArray[np.float64]
# NOTE: ~16 MB of draws per block: large enough that numpy's per-call cost vanishes, small
# enough that the block and its temporaries are reused from block to block by the allocator
# instead of being faulted in afresh.
BLOCK_CELLS = 1 << 21


@dataclass(frozen=True)
class Block:
    """A block of resamples: the rows each one drew (resamples by draws) and how often it drew each
    row (resamples by rows)."""

    drawn: NDArray[np.uint32]
    counts: Array

    @property
    def sizes(self) -> Array:
        return np.full(len(self.drawn), float(self.drawn.shape[1]))


OnBlock = Callable[[Block], Array]  # the metric of each resample of a block
Prepare = Callable[[Array, Array], OnBlock]  # (y, scores) -> the metric over any block
Decide = Callable[[Array, Array, float], OnBlock]  # (y, scores, threshold) -> a metric of decided classes


def count_blocks(y: Array, stratified: bool, resamples: int, seed: int) -> Iterator[Block]:
    """The resamples, in blocks; stratified by class, so every resample keeps the class mix."""
    rng = np.random.default_rng(seed)
    strata = [np.flatnonzero(y == k) for k in np.unique(y)] if stratified else [np.arange(len(y))]
    block = max(1, BLOCK_CELLS // max(len(y), 1))
    for first in range(0, resamples, block):
        size = min(block, resamples - first)
        drawn = np.hstack([_draw(rng, rows, size) for rows in strata])
        yield Block(drawn, _tally(drawn, len(y)))


def _draw(rng: np.random.Generator, rows: NDArray[np.int64], size: int) -> NDArray[np.uint32]:
    # NOTE: 32-bit draws take half the time of 64-bit ones; consecutive rows need no lookup
    if len(rows) and rows[-1] - rows[0] == len(rows) - 1:
        return rng.integers(rows[0], rows[0] + len(rows), (size, len(rows)), dtype=np.uint32)
    return rows.astype(np.uint32)[rng.integers(0, len(rows), (size, len(rows)), dtype=np.uint32)]


def _tally(drawn: NDArray[np.uint32], bins: int, bin_of: NDArray[np.int64] | None = None) -> Array:
    """How often each resample drew each row (rows by bins), or each bin of the rows when `bin_of`
    maps rows to bins. The counts are float64 (exact), ready for matrix products."""
    # NOTE: one resample at a time keeps its draws and counts in cache; one bincount over the
    # block, with each resample's values offset, takes twice as long
    out = np.empty((len(drawn), bins))
    for row, found in zip(drawn, out, strict=True):
        rows = row.astype(np.intp)
        found[:] = np.bincount(rows if bin_of is None else bin_of[rows], minlength=bins)
    return out


def _ratio(numerator: Array, denominator: Array) -> Array:
    return np.divide(numerator, denominator, out=np.zeros_like(numerator), where=denominator > 0)


def _mean_of(per_row: Array) -> OnBlock:
    """A metric that is the mean of a per-row quantity."""
    return lambda block: np.asarray(block.counts @ per_row / block.sizes)


def accuracy(y: Array, p: Array, threshold: float = DEFAULT_THRESHOLD) -> OnBlock:
    return _mean_of((decided(p, threshold) == y).astype(np.float64))


def log_loss(y: Array, p: Array) -> OnBlock:
    return _mean_of(-np.log(np.clip(p[np.arange(len(y)), y.astype(np.int64)], _EPS, 1.0)))


def brier(y: Array, p: Array) -> OnBlock:
    return _mean_of((_positive(p) - y) ** 2)


def _from_binary_counts(formula: Callable[[Array, Array, Array], Array]) -> Decide:
    """A metric of each resample's true positives, predicted positives and actual positives, which
    one matrix product gives."""
    def prepared(y: Array, p: Array, threshold: float = DEFAULT_THRESHOLD) -> OnBlock:
        predicted, actual = _positive(p) >= threshold, y == 1
        columns = np.column_stack([predicted & actual, predicted, actual]).astype(np.float64)
        return lambda block: formula(*(block.counts @ columns).T)
    return prepared


precision = _from_binary_counts(lambda tp, guessed, truth: _ratio(tp, guessed))
recall = _from_binary_counts(lambda tp, guessed, truth: _ratio(tp, truth))
f1 = _from_binary_counts(lambda tp, guessed, truth: _ratio(2 * tp, guessed + truth))


def _f1_per_class(y: Array, p: Array) -> Callable[[Block], tuple[Array, Array]]:
    classes = np.arange(p.shape[1])
    truth = (y.astype(np.int64)[:, None] == classes).astype(np.float64)
    guess = (np.argmax(p, axis=1)[:, None] == classes).astype(np.float64)
    hits = truth * guess

    def on_block(block: Block) -> tuple[Array, Array]:
        support = block.counts @ truth
        return _ratio(2 * (block.counts @ hits), block.counts @ guess + support), support
    return on_block


def f1_macro(y: Array, p: Array) -> OnBlock:
    per_class = _f1_per_class(y, p)
    return lambda block: np.asarray(per_class(block)[0].mean(axis=1))


def f1_weighted(y: Array, p: Array) -> OnBlock:
    per_class = _f1_per_class(y, p)

    def on_block(block: Block) -> Array:
        scores, support = per_class(block)
        return np.asarray((scores * support).sum(axis=1) / support.sum(axis=1))
    return on_block


class _Tallies(NamedTuple):
    """Per resample and run (resamples by runs), then per resample."""

    in_run: Array  # drawn positives with the run's score
    positives_below: Array
    negatives_below: Array
    negatives_through: Array  # below, or tied with the run
    positives: Array
    negatives: Array


class _Ranking:
    """One model's rows placed, once, among the distinct scores of its positive rows (the runs).

    A positive row's slot is its run; a negative row's slot says which runs it is scored above
    and whether it ties one. Counting each resample's draws per slot and summing them up the
    slots gives what both rank metrics need, in one pass over the draws, without sorting them.
    """

    def __init__(self, y: Array, scores: Array) -> None:
        self.undefined = not np.isfinite(scores).all()  # NOTE: a NaN score has no rank
        scores = np.nan_to_num(scores)
        positive = y == 1
        runs = np.unique(scores[positive])  # ascending
        self.runs = len(runs)
        negatives = scores[~positive]
        below = np.searchsorted(runs, negatives)  # the runs scored strictly below each negative
        tied = (below < len(runs)) & (runs[np.minimum(below, len(runs) - 1)] == negatives) if len(runs) else False
        self.slot = np.empty(len(y), np.int64)
        # NOTE: negatives take slots 0 .. 2*runs (2g: between runs g-1 and g; 2g+1: tied with run g),
        # positives the slots after them, one per run
        self.slot[~positive] = 2 * below + tied
        self.slot[positive] = 2 * len(runs) + 1 + np.searchsorted(runs, scores[positive])
        self._block: Block | None = None
        self._found: _Tallies | None = None

    def tallies(self, block: Block) -> _Tallies:
        # NOTE: both rank metrics of one model read the tallies of one block
        if block is not self._block or self._found is None:
            counts = _tally(block.drawn, 3 * self.runs + 1, self.slot)
            negatives, positives = np.cumsum(counts[:, :2 * self.runs + 1], axis=1), counts[:, 2 * self.runs + 1:]
            positives_through = np.cumsum(positives, axis=1)
            self._found = _Tallies(positives, positives_through - positives, negatives[:, 0:-1:2],
                                   negatives[:, 1::2], positives.sum(axis=1), negatives[:, -1])
            self._block = block
        return self._found


def roc_auc(ranking: _Ranking) -> OnBlock:
    """P(a drawn positive outscores a drawn negative), ties counting half: the Mann-Whitney form."""
    def on_block(block: Block) -> Array:
        t = ranking.tallies(block)
        pairs = t.positives * t.negatives
        if ranking.undefined:
            return np.full(len(pairs), np.nan)
        # NOTE: sums of whole numbers (exact in float64), halved once: the negatives below a run
        # plus half of those tied with it
        wins = (t.in_run * (t.negatives_below + t.negatives_through)).sum(axis=1) / 2
        auc = _ratio(wins, pairs)
        auc[pairs == 0] = np.nan
        return auc
    return on_block


def pr_auc(ranking: _Ranking) -> OnBlock:
    """Average precision: at each distinct score, from the highest, the precision there weighted by
    the positives it adds."""
    def on_block(block: Block) -> Array:
        t = ranking.tallies(block)
        if ranking.undefined:
            return np.full(len(t.positives), np.nan)
        positives_above = t.positives[:, None] - t.positives_below  # NOTE: at or above the run
        precision_there = _ratio(positives_above, positives_above + t.negatives[:, None] - t.negatives_below)
        ap = _ratio((t.in_run * precision_there).sum(axis=1), t.positives)
        ap[t.positives == 0] = np.nan
        return ap
    return on_block


def rmse(y: Array, pred: Array) -> OnBlock:
    mean_square = _mean_of((pred - y) ** 2)
    return lambda block: np.sqrt(mean_square(block))


def mae(y: Array, pred: Array) -> OnBlock:
    return _mean_of(np.abs(pred - y))


def mape(y: Array, pred: Array) -> OnBlock:
    return _mean_of(np.abs(pred - y) / np.maximum(np.abs(y), np.finfo(np.float64).eps))


def r2(y: Array, pred: Array) -> OnBlock:
    centred = y - y.mean()  # NOTE: the sum of squares is taken about a close mean, without cancellation
    columns = np.column_stack([centred, centred**2, (y - pred) ** 2])

    def on_block(block: Block) -> Array:
        total_sum, total_square, residual = (block.counts @ columns).T
        total = total_square - total_sum**2 / block.sizes
        out: Array = 1.0 - _ratio(residual, total)
        out[total <= 0] = np.nan
        return out
    return on_block


def top_k_accuracy(k: int) -> Prepare:
    return lambda y, p: _mean_of(top_k_hits(k, y, p).astype(np.float64))


AVERAGED: dict[str, Prepare] = {
    "log_loss": log_loss, "brier": brier, "f1_macro": f1_macro, "f1_weighted": f1_weighted, "rmse": rmse, "mae": mae,
    "r2": r2, "mape": mape,
    "top_2_accuracy": top_k_accuracy(2), "top_3_accuracy": top_k_accuracy(3), "top_5_accuracy": top_k_accuracy(5),
}
RANKED: dict[str, Callable[[_Ranking], OnBlock]] = {"roc_auc": roc_auc, "pr_auc": pr_auc}
# NOTE: the metrics of decided classes, metrics.THRESHOLDED's: each takes its model's threshold
DECIDED: dict[str, Decide] = {"accuracy": accuracy, "precision": precision, "recall": recall, "f1": f1}


def _prepare_one(name: str, y: Array, scores: Array, threshold: float, ranking: _Ranking | None) -> OnBlock:
    if ranking is not None and name in RANKED:
        return RANKED[name](ranking)
    return DECIDED[name](y, scores, threshold) if name in DECIDED else AVERAGED[name](y, scores)


def prepare(names: list[str], y: Array, scores: Array, threshold: float = DEFAULT_THRESHOLD) -> dict[str, OnBlock]:
    """Each named metric of one model, ready to evaluate on any block of resamples; the rank metrics
    share one placement of the rows, the metrics of decided classes use the model's `threshold`."""
    ranking = _Ranking(y, _positive(scores)) if RANKED.keys() & set(names) else None
    return {name: _prepare_one(name, y, scores, threshold, ranking) for name in names}


def paired_draws(names: list[str], y: Array, models: list[Array], stratified: bool, resamples: int,
                 seed: int, thresholds: Sequence[float] | None = None) -> list[dict[str, Array]]:
    """Each model's named metrics on the same resamples (paired): per model, per metric, one value a resample.
    `thresholds`: each model's own (binary), 0.5 for all when None."""
    found_thresholds = [DEFAULT_THRESHOLD] * len(models) if thresholds is None else list(thresholds)
    prepared = [prepare(names, y, scores, threshold)
                for scores, threshold in zip(models, found_thresholds, strict=True)]
    found: list[dict[str, list[Array]]] = [{name: [] for name in names} for _ in models]
    for block in count_blocks(y, stratified, resamples, seed):
        for on_model, parts in zip(prepared, found, strict=True):
            for name in names:
                parts[name].append(on_model[name](block))
    return [{name: np.concatenate(values) for name, values in parts.items()} for parts in found]
