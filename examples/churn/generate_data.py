"""Synthetic customer-churn data for the example: deterministic for a seed.

Numeric and categorical columns, about one customer in four churning, empty values where a real
export has them (total charges of brand-new customers), label noise, and an evaluation file drawn
from the same process with another seed.

    python generate_data.py                      # data/train.parquet and data/eval.parquet
    python generate_data.py --rows 2000 --out /tmp/churn
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pandas as pd

CONTRACTS = ["month-to-month", "one-year", "two-year"]
PAYMENTS = ["electronic-check", "mailed-check", "bank-transfer", "credit-card"]
INTERNET = ["dsl", "fiber", "none"]


def generate(rows: int, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    contract = rng.choice(CONTRACTS, rows, p=[0.55, 0.25, 0.20])
    tenure = np.where(contract == "month-to-month", rng.integers(0, 40, rows), rng.integers(6, 73, rows))
    internet = rng.choice(INTERNET, rows, p=[0.35, 0.45, 0.20])
    base = {"dsl": 45.0, "fiber": 80.0, "none": 22.0}
    monthly = np.round(np.array([base[i] for i in internet]) + rng.gamma(2.0, 8.0, rows), 2)
    total = np.round(tenure * monthly * rng.normal(1.0, 0.05, rows), 2)
    total = np.where(tenure == 0, np.nan, total)  # new customers have no billing history yet
    payment = rng.choice(PAYMENTS, rows, p=[0.35, 0.20, 0.22, 0.23])
    tickets = rng.poisson(np.where(internet == "fiber", 1.6, 0.9))
    senior = (rng.random(rows) < 0.16).astype(np.int64)
    products = rng.integers(1, 6, rows)
    logit = (-1.6 + 1.5 * (contract == "month-to-month") - 0.5 * (contract == "two-year") - 0.035 * tenure
             + 0.018 * (monthly - 60) + 0.32 * tickets + 0.45 * (payment == "electronic-check")
             + 0.35 * senior - 0.12 * products + rng.logistic(0, 0.6, rows))
    churned = (logit > 0).astype(np.int64)
    flip = rng.random(rows) < 0.03  # mislabelled rows, as in every real export
    churned[flip] = 1 - churned[flip]
    return pd.DataFrame({
        "tenure_months": tenure.astype(np.int64), "monthly_charges": monthly, "total_charges": total,
        "contract": contract, "payment_method": payment, "internet_service": internet,
        "support_tickets": tickets.astype(np.int64), "senior": senior, "num_products": products.astype(np.int64),
        "churned": churned,
    })


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=20_000, help="training rows (evaluation gets a quarter)")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "data")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    generate(args.rows, args.seed).to_parquet(args.out / "train.parquet", index=False)
    generate(max(args.rows // 4, 1), args.seed + 1).to_parquet(args.out / "eval.parquet", index=False)
    print(f"wrote {args.out / 'train.parquet'} ({args.rows} rows) and {args.out / 'eval.parquet'}")


if __name__ == "__main__":
    main()
