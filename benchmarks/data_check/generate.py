"""Write the benchmark's Parquet file: ROWS rows x 20 columns, deterministic for a seed.

    python generate.py ROWS OUT.parquet [--seed 0]

Rows are generated and written 1,000,000 at a time (one row group each), so memory stays flat.
Each chunk plants the problems the checks must find, at positions drawn from that chunk's generator:
- f2: BAD_FRACTION of the rows hold OUT_OF_RANGE, above f2's declared maximum;
- c2: BAD_FRACTION of the rows hold UNKNOWN, outside c2's allowed values;
- DUPLICATE_FRACTION of the rows are overwritten with a copy of an earlier row of the same chunk.
Planted rows, copies and their sources are all distinct, so the counts are exact (see planted()).
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from spec import CATEGORIES, FLOATS, INTS, LABEL_SHARE, NULLABLE, float_params

CHUNK = 1_000_000
NULL_FRACTION = 0.01
BAD_FRACTION = 1e-5
DUPLICATE_FRACTION = 1e-4
OUT_OF_RANGE = 1000.0
UNKNOWN = "zz"


def _chunk_planted(n: int) -> tuple[int, int]:
    """(bad values per planted column, duplicated rows) in a chunk of n rows."""
    bad, dups = max(1, round(n * BAD_FRACTION)), max(1, round(n * DUPLICATE_FRACTION))
    return (bad, dups) if n >= 2 * bad + 2 * dups else (0, 0)


def _chunk_sizes(rows: int) -> list[int]:
    return [min(CHUNK, rows - start) for start in range(0, rows, CHUNK)]


def planted(rows: int) -> dict[str, int]:
    """What a file of `rows` rows holds: f2 values out of range, unknown c2 values, duplicate rows."""
    per_chunk = [_chunk_planted(n) for n in _chunk_sizes(rows)]
    bad = sum(b for b, _ in per_chunk)
    return {"f2_out_of_range": bad, "c2_unknown": bad, "duplicate_rows": sum(d for _, d in per_chunk)}


def make_chunk(n: int, seed: int, index: int) -> pa.Table:
    rng = np.random.default_rng([seed, index])
    values: dict[str, np.ndarray] = {}
    masks: dict[str, np.ndarray] = {}
    for k in range(FLOATS):
        mean, sd = float_params(k)
        values[f"f{k}"] = rng.normal(mean, sd, n)
    for name in NULLABLE:
        masks[name] = rng.random(n) < NULL_FRACTION
    for name, high in INTS.items():
        values[name] = rng.integers(0, high, n, dtype=np.int64)
    codes = {name: rng.integers(0, len(cats), n, dtype=np.int32) for name, cats in CATEGORIES.items()}
    values["label"] = (rng.random(n) < LABEL_SHARE).astype(np.int64)

    bad, dups = _chunk_planted(n)
    positions = rng.choice(n, 2 * bad + 2 * dups, replace=False)
    values["f2"][positions[:bad]] = OUT_OF_RANGE
    codes["c2"][positions[bad:2 * bad]] = len(CATEGORIES["c2"])  # the code of UNKNOWN
    pairs = positions[2 * bad:].reshape(2, dups)
    sources, targets = pairs.min(axis=0), pairs.max(axis=0)  # copy each earlier row over a later one
    for column in (*values.values(), *masks.values(), *codes.values()):
        column[targets] = column[sources]

    arrays: dict[str, pa.Array] = {}
    for k in range(FLOATS):
        name = f"f{k}"
        arrays[name] = pa.array(values[name], mask=masks.get(name))
    for name in INTS:
        arrays[name] = pa.array(values[name])
    for name, cats in CATEGORIES.items():
        arrays[name] = pa.array([*cats, UNKNOWN]).take(pa.array(codes[name]))
    arrays["label"] = pa.array(values["label"])
    return pa.table(arrays)


def generate(rows: int, out: str, seed: int = 0) -> None:
    writer: pq.ParquetWriter | None = None
    try:
        for index, n in enumerate(_chunk_sizes(rows)):
            table = make_chunk(n, seed, index)
            if writer is None:
                writer = pq.ParquetWriter(out, table.schema)
            writer.write_table(table, row_group_size=CHUNK)
    finally:
        if writer is not None:
            writer.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("rows", type=int)
    parser.add_argument("out")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    if args.rows < 1:
        parser.error("ROWS must be at least 1")
    start = time.perf_counter()
    generate(args.rows, args.out, args.seed)
    print(f"wrote {args.out}: {args.rows} rows in {time.perf_counter() - start:.1f}s; planted {planted(args.rows)}")


if __name__ == "__main__":
    main()
