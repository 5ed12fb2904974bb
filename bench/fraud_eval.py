"""The handbook's dataset and evaluation, measured: simulator time and counts for the default configuration
(checked against the handbook's 1,754,155 transactions and 14,681 frauds), feature time, optionally the
PostgreSQL load, and the `wfp eval fraud` figures.

    .venv/bin/python bench/fraud_eval.py [--workers 1 2] [--skip-eval] [--load] [--models ...]

Prints one JSON object. `--load` loads the dataset into the PostgreSQL at WFP_PG_ADMIN_DSN (twice: the second load
must insert nothing). CPU seconds are reported beside wall seconds because the machines are shared.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

T = TypeVar("T")


def cpu_seconds() -> float:
    own = resource.getrusage(resource.RUSAGE_SELF)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def timed(fn: Callable[..., T], *args: object, **kwargs: object) -> tuple[T, dict[str, float]]:
    wall, cpu = time.perf_counter(), cpu_seconds()
    result = fn(*args, **kwargs)
    return result, {"wall_s": round(time.perf_counter() - wall, 2), "cpu_s": round(cpu_seconds() - cpu, 2)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--skip-eval", action="store_true")
    parser.add_argument("--load", action="store_true", help="also load into PostgreSQL at WFP_PG_ADMIN_DSN")
    parser.add_argument("--models", nargs="*", default=None)
    args = parser.parse_args()

    from workflow_platform.demo_data.fraud_simulator import (
        HANDBOOK_FRAUDS,
        HANDBOOK_TRANSACTIONS,
        simulate,
        write_cache,
    )
    from workflow_platform.fraud.features import transform_features

    report: dict = {"simulator": {}}
    dataset = None
    for workers in args.workers:
        dataset, times = timed(simulate, workers=workers)
        report["simulator"][f"workers_{workers}"] = times
    assert dataset is not None
    transactions = dataset.transactions
    counts = {
        "transactions": len(transactions),
        "frauds": int(transactions["TX_FRAUD"].sum()),
        "by_scenario": {
            int(k): int(v) for k, v in transactions["TX_FRAUD_SCENARIO"].value_counts().sort_index().items()
        },
    }
    counts["matches_handbook"] = (counts["transactions"], counts["frauds"]) == (
        HANDBOOK_TRANSACTIONS,
        HANDBOOK_FRAUDS,
    )
    report["counts"] = counts
    _, report["features_full_dataset"] = timed(transform_features, transactions)

    if args.load:
        from workflow_platform.demo_data.fraud_load import load_transactions

        first, first_times = timed(load_transactions, dataset)
        second, second_times = timed(load_transactions, dataset)
        report["postgres_load"] = {"first": {**first, **first_times}, "again": {**second, **second_times}}

    if not args.skip_eval:
        from workflow_platform.demo_data.fraud_handbook import evaluate_handbook

        cache = Path(os.environ.get("WFP_HOME") or tempfile.mkdtemp(prefix="wfp-bench-")) / "cache" / "fraud"
        write_cache(dataset, cache)  # the evaluation reads the dataset simulated above
        evaluation, times = timed(evaluate_handbook, args.models, cache)
        report["evaluation"] = {**evaluation.to_dict(), **times}
        print(evaluation.table(), file=sys.stderr)

    print(json.dumps(report, indent=2))
    return 0 if counts["matches_handbook"] else 1


if __name__ == "__main__":
    sys.exit(main())
