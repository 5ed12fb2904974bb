"""The handbook's evaluation protocol run on the simulated dataset (`wfp fraud evaluate`, bench/fraud_eval.py)."""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Sequence
from pathlib import Path

from workflow_platform.demo_data.fraud_simulator import SimulationConfig, simulate_cached
from workflow_platform.fraud.evaluation import (
    DELTA_DELAY,
    DELTA_TEST,
    DELTA_TRAIN,
    START_TRAINING,
    HandbookEvaluation,
    evaluate_models,
)
from workflow_platform.fraud.features import transform_features
from workflow_platform.fraud.model import available_models


def evaluate_handbook(
    models: Sequence[str] | None = None,
    cache_dir: Path | None = None,
    config: SimulationConfig | None = None,
) -> HandbookEvaluation:
    """Run the handbook's protocol on the simulated dataset (cached as parquet) for each model name.

    `models` defaults to every available candidate (`model.available_models()`); `config` to the handbook's
    dataset (a smaller one must still cover 2018-06-15..08-14 for the protocol's dates).
    """
    began = time.perf_counter()
    dataset = simulate_cached(config or SimulationConfig(), cache_dir)
    simulated = time.perf_counter()
    # The handbook computes features on the whole dataset; only the evaluated weeks and the 37 days of
    # history their windows reach are needed.
    first = START_TRAINING - dt.timedelta(days=40)
    last = START_TRAINING + dt.timedelta(days=DELTA_TRAIN + DELTA_DELAY + DELTA_TEST)
    window = dataset.transactions[
        (dataset.transactions["TX_DATETIME"] >= first) & (dataset.transactions["TX_DATETIME"] < last)
    ]
    features = transform_features(window)
    featured = time.perf_counter()
    results, train, test = evaluate_models(features, models or available_models())
    return HandbookEvaluation(
        results=results,
        n_train=len(train),
        n_test=len(test),
        n_train_frauds=int(train["TX_FRAUD"].sum()),
        n_test_frauds=int(test["TX_FRAUD"].sum()),
        simulation_seconds=simulated - began,
        features_seconds=featured - simulated,
    )
