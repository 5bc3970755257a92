"""A generated credit data set with the structure real ones have: an immutable integer age, a debt total
that is the sum of its parts, a binary employment flag with a logical constraint on income, and a
one-hot housing category; the default label depends on age, debt relative to income and employment."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np

COLUMNS = (
    "age", "income", "loan", "interest", "total_debt", "n_accounts", "employed",
    "housing_own", "housing_rent", "housing_free",
)  # fmt: skip

SCHEMA = """\
features:
  label: defaulted
  columns:
    - name: age
      type: integer
      mutable: false
    - name: income
      range: [0, 400]
    - name: n_accounts
      type: integer
    - name: employed
      type: binary
  one_hot:
    - name: housing
      columns: [housing_own, housing_rent, housing_free]
  constraints:
    - total_debt == loan + interest
    - interest <= 0.3 * loan
    - if employed == 0 then income <= 60
"""


def make_credit(count: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """``count`` applicants as float32 features in ``COLUMNS`` order, and int64 labels (1 = default)."""
    rng = np.random.default_rng(seed)
    age = rng.integers(18, 80, count).astype(np.float64)
    employed = (rng.random(count) < 0.8).astype(np.float64)
    income = np.where(employed == 1, rng.uniform(20, 300, count), rng.uniform(5, 60, count))
    loan = rng.uniform(1, 200, count)
    interest = loan * rng.uniform(0.02, 0.3, count)
    total = loan + interest
    accounts = rng.integers(0, 12, count).astype(np.float64)
    housing = np.eye(3)[rng.integers(0, 3, count)]
    score = 2.2 * (total / (income + 10)) - 0.05 * (age - 45) - 1.0 * employed + 0.1 * accounts - 0.8
    label = (score + rng.normal(0, 0.3, count) > 0).astype(np.int64)
    features = np.column_stack([age, income, loan, interest, total, accounts, employed, housing])
    # float32 as the file and the model see them; total recomputed so the equality holds in float32
    features = features.astype(np.float32)
    features[:, 4] = features[:, 2] + features[:, 3]
    return features, label


def write_credit_csv(path: Path, x: np.ndarray, y: np.ndarray) -> Path:
    with path.open("w", newline="", encoding="utf-8") as stream:
        writer = csv.writer(stream)
        writer.writerow([*COLUMNS, "defaulted"])
        for row, label in zip(x.tolist(), y.tolist(), strict=True):
            writer.writerow([repr(float(np.float32(v))) for v in row] + [label])
    return path
