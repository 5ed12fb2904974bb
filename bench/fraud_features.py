"""The fraud handbook's 15 features for the full simulated dataset (1,754,155 transactions): the Pathway
service's fraud-features-pipeline (by reference in and out), next to the handbook's own pandas code and our
vectorised pandas reference, on the same machine.

    .venv/bin/python bench/fraud_features.py [--repeat 2] [--handbook-cards 500] [--full-handbook]

Prints one JSON object. The Pathway time is request sent to answer received, with the parquet input already in
the object store and the feature table written back to it. The handbook's code applies a pandas rolling window
per card and per terminal; it takes minutes on the full dataset, so by default it runs on the transactions of
`--handbook-cards` cards (and the terminals they use) and its full-dataset time is extrapolated from the rows/s
(`--full-handbook` runs it on everything). Target: the full dataset under 60 s with Pathway.
"""

from __future__ import annotations

import argparse
import io
import json
import statistics
import time

import numpy as np
import pandas as pd
import requests
from pathway_pipelines import BUCKET, PeakRss, object_store, service_pid, services

from workflow_platform.fraud.features import FEATURES, transform_features
from workflow_platform.fraud.handbook_reference import handbook_features
from workflow_platform.fraud.simulator import simulate_cached

TARGET_SECONDS = 60.0


def pathway_features(url: str, store, frame: pd.DataFrame, repeat: int, pid: int) -> dict:  # noqa: ANN001
    buffer = io.BytesIO()
    frame.to_parquet(buffer, index=False)
    data = buffer.getvalue()
    store.put_object(BUCKET, "bench/fraud-transactions.parquet", io.BytesIO(data), len(data))
    body = {
        "transactions": {"ref": f"s3://{BUCKET}/bench/fraud-transactions.parquet"},
        "output": f"s3://{BUCKET}/bench/fraud-features.parquet",
    }
    seconds, answer = [], {}
    with PeakRss(pid) as memory:
        for _ in range(repeat):
            started = time.perf_counter()
            response = requests.post(f"{url}/pipelines/fraud-features-pipeline/run", json=body, timeout=1800)
            seconds.append(time.perf_counter() - started)
            response.raise_for_status()
            answer = response.json()
    median = statistics.median(seconds)
    return {
        "seconds": [round(s, 2) for s in seconds],
        "median_seconds": round(median, 2),
        "rows_per_second": round(len(frame) / median),
        "service_rss_peak_mb": memory.peak_mb,
        "rows_out": answer["rowCount"],
        "skipped": answer["skipped"],
        "input_parquet_mb": round(len(data) / 2**20, 1),
    }


def check_against_reference(store, frame: pd.DataFrame) -> float:  # noqa: ANN001
    """Largest absolute difference between the service's features and transform_features'."""
    response = store.get_object(BUCKET, "bench/fraud-features.parquet")
    try:
        table = pd.read_parquet(io.BytesIO(response.read())).set_index("TRANSACTION_ID").sort_index()
    finally:
        response.close()
        response.release_conn()
    reference = transform_features(frame).set_index("TRANSACTION_ID").sort_index()
    return float(np.max(np.abs(table[FEATURES].to_numpy(float) - reference[FEATURES].to_numpy(float))))


def timed(call) -> tuple[float, object]:  # noqa: ANN001
    started = time.perf_counter()
    result = call()
    return time.perf_counter() - started, result


def handbook_run(frame: pd.DataFrame, cards: int | None) -> dict:
    if cards is not None:
        chosen = np.random.default_rng(0).choice(frame["CUSTOMER_ID"].unique(), cards, replace=False)
        frame = frame[frame["CUSTOMER_ID"].isin(chosen)]
    seconds, _ = timed(lambda: handbook_features(frame))
    rate = len(frame) / seconds
    return {"rows": len(frame), "seconds": round(seconds, 2), "rows_per_second": round(rate)}


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--handbook-cards", type=int, default=500)
    parser.add_argument("--full-handbook", action="store_true")
    options = parser.parse_args()

    transactions = simulate_cached().transactions
    frame = transactions[
        ["TRANSACTION_ID", "TX_DATETIME", "CUSTOMER_ID", "TERMINAL_ID", "TX_AMOUNT", "TX_FRAUD"]
    ]
    report: dict = {"rows": len(frame), "target_seconds": TARGET_SECONDS}
    with services() as (env, started):
        store = object_store(env)
        report["pathway"] = pathway_features(
            env["WFP_PATHWAY_URL"], store, frame, options.repeat, service_pid(env, started)
        )
        report["pathway"]["max_abs_difference_from_pandas_reference"] = check_against_reference(store, frame)
    seconds, _ = timed(lambda: transform_features(frame))
    report["pandas_vectorised"] = {
        "seconds": round(seconds, 2),
        "rows_per_second": round(len(frame) / seconds),
    }
    handbook = handbook_run(frame, None if options.full_handbook else options.handbook_cards)
    if not options.full_handbook:
        handbook["full_dataset_seconds_extrapolated"] = round(len(frame) / handbook["rows_per_second"], 1)
    report["handbook_pandas"] = handbook
    report["target_met"] = report["pathway"]["median_seconds"] < TARGET_SECONDS
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
