"""Fraud models and the real-time fraud stream: `trainModel` fits scikit-learn models on a feature table (the fraud-features-pipeline's output),
evaluates them on the handbook's protocol (train window, delay, test window without the cards already known
compromised) and stores the best in the object store, where fraud-detection-pipeline finds it.

Stored under `models/fraud/<version>/` (model.joblib, metrics.json) with `models/fraud/latest.json` naming the
newest when `promote` is on; see `workflow_platform.fraud.model`. `startStream`, `stopStream` and `replayStream`
operate the streaming pipeline that scores with it: plugins/fraud_stream.py.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import io
from typing import TYPE_CHECKING, Any

from pydantic import Field, field_validator

from workflow_platform.fraud import LATEST_KEY, MODEL_NAMES, MODEL_PREFIX
from workflow_platform.language.actions import (
    Action,
    ActionError,
    ActionInput,
    ActionOutput,
    StepContext,
    Touched,
    plugin,
)
from workflow_platform.plugins.fraud_stream import STREAM_ACTIONS
from workflow_platform.plugins.minio import object_asset_key, read_input_object

if TYPE_CHECKING:  # resources import dagster and the clients; validation must stay light
    import pandas as pd

    from workflow_platform.fraud.evaluation import ModelResult
    from workflow_platform.resources.object_store import ObjectStoreResource

REQUIRED_COLUMNS = ("TRANSACTION_ID", "TX_DATETIME", "CUSTOMER_ID", "TX_FRAUD")


class TrainModelInput(ActionInput):
    features: dict[str, Any] = Field(
        description="The feature table: fraud-features-pipeline's `table` ({ref, format} or {rows})."
    )
    trainStart: dt.date = Field(dt.date(2018, 7, 25), description="First day of the training window (UTC).")
    trainDays: int = Field(7, ge=1, le=366)
    delayDays: int = Field(7, ge=0, le=90, description="Days after training whose labels are not known yet.")
    testDays: int = Field(7, ge=1, le=90)
    models: list[str] = Field(
        default_factory=lambda: ["hist_gradient_boosting"],
        min_length=1,
        description=f"Candidates to fit; the best (average precision) is stored. One of: {', '.join(MODEL_NAMES)}.",
    )
    promote: bool = Field(True, description="Make the stored model the `latest` that scoring uses.")

    @field_validator("models")
    @classmethod
    def _known(cls, models: list[str]) -> list[str]:
        # A template is checked once rendered, when the step runs.
        unknown = [m for m in models if m not in MODEL_NAMES and "{{" not in m]
        if unknown:
            raise ValueError(f"unknown model(s) {unknown}; choose from {list(MODEL_NAMES)}")
        return list(dict.fromkeys(models))


def feature_table(store: ObjectStoreResource, table: dict[str, Any]) -> pd.DataFrame:
    """The features as a DataFrame, with the naive-UTC TX_DATETIME and the TX_TIME_DAYS the protocol uses."""
    import pandas as pd

    if "rows" in table:
        frame = pd.DataFrame(table["rows"])
    elif isinstance(table.get("ref"), str) and table["ref"].startswith("s3://"):
        bucket, _, key = table["ref"].removeprefix("s3://").partition("/")
        frame = pd.read_parquet(io.BytesIO(read_input_object(store, bucket, key)[0]))
    else:
        raise ActionError('features must be {"ref": "s3://bucket/key.parquet"} or {"rows": [...]}')
    missing = [c for c in REQUIRED_COLUMNS if c not in frame.columns]
    if missing:
        raise ActionError(
            f"the feature table has no column {missing}: give fraud-features-pipeline's `table`"
        )
    when = pd.to_datetime(frame["TX_DATETIME"], utc=True).dt.tz_localize(None)
    frame["TX_DATETIME"] = when
    frame["TX_TIME_DAYS"] = (when - pd.Timestamp(0)) // pd.Timedelta(days=1)
    return frame


def model_version(model_name: str, ctx: StepContext) -> str:
    """`<execution start>-<model>-<digest of execution key and step>`: what save_model makes, but the same for a
    re-execution of the run, which overwrites its model rather than storing (and promoting) a second one."""
    started = dt.datetime.fromisoformat(ctx.execution_started()).astimezone(dt.UTC)
    digest = hashlib.sha256(f"{ctx.execution_key}/{ctx.step_id}".encode()).hexdigest()[:8]
    return f"{started:%Y%m%dT%H%M%SZ}-{model_name}-{digest}"


def train_model(store: ObjectStoreResource, spec: TrainModelInput, ctx: StepContext) -> ActionOutput:
    from workflow_platform.fraud.evaluation import HANDBOOK_BEST_TUNED
    from workflow_platform.fraud.model import save_model

    window = f"{spec.trainStart}..+{spec.trainDays}d, delay {spec.delayDays}d, test {spec.testDays}d"
    results, train, test = _evaluate(feature_table(store, spec.features), spec, window)
    best = max(results, key=lambda r: (r.metrics["average_precision"], r.metrics["auc_roc"]))
    model = best.model
    model.trained_on.update(
        {"protocol": window, "test_rows": len(test), "test_frauds": int(test["TX_FRAUD"].sum())}
    )
    client, bucket = store.client(), store.ensure_bucket()
    version = save_model(model, client, bucket, promote=spec.promote, version=model_version(best.name, ctx))
    metrics = {r.name: {k: round(float(v), 4) for k, v in r.metrics.items()} for r in results}
    model_key = f"{MODEL_PREFIX}/{version}/model.joblib"
    result = {
        "version": version,
        "model": best.name,
        "bucket": bucket,
        "key": model_key,
        "promoted": spec.promote,
        "metrics": metrics[best.name],
        "candidates": metrics,
        "handbook": {r.name: r.handbook for r in results if r.handbook} | {"best_tuned": HANDBOOK_BEST_TUNED},
        "train": {"rows": len(train), "frauds": int(train["TX_FRAUD"].sum())},
        "test": {"rows": len(test), "frauds": int(test["TX_FRAUD"].sum())},
    }
    touched = _stored_assets(bucket, model_key, version, best.name, metrics[best.name], spec.promote)
    return ActionOutput(result, touched, preview_markdown=_comparison(version, window, metrics))


def _evaluate(
    frame: pd.DataFrame, spec: TrainModelInput, window: str
) -> tuple[list[ModelResult], pd.DataFrame, pd.DataFrame]:
    """Every candidate fitted on the training window and measured on the test window, which must hold both
    labels."""
    from workflow_platform.fraud.evaluation import evaluate_models

    start = dt.datetime.combine(spec.trainStart, dt.time())
    train_rows = frame["TX_DATETIME"].between(
        start, start + dt.timedelta(days=spec.trainDays), inclusive="left"
    )
    if not train_rows.any() or frame.loc[train_rows, "TX_FRAUD"].nunique() < 2:
        raise ActionError(
            f"the training window {window} has no transactions with both labels (frauds and genuine): "
            "load transactions for it (wfp seed transactions) or move trainStart"
        )
    try:
        results, train, test = evaluate_models(
            frame, spec.models, start, spec.trainDays, spec.delayDays, spec.testDays
        )
    except ValueError as exc:  # e.g. a candidate whose package is not installed: retrying will not help
        raise ActionError(str(exc)) from None
    if test.empty or test["TX_FRAUD"].nunique() < 2:
        raise ActionError(
            f"the test window of {window} has no transactions with both labels: extend the data"
        )
    return results, train, test


def _stored_assets(
    bucket: str, model_key: str, version: str, model_name: str, metrics: dict[str, float], promote: bool
) -> list[Touched]:
    """The stored model, and the `latest` pointer when it was promoted."""
    touched = [
        Touched(
            object_asset_key(bucket, model_key),
            "fraud model stored",
            {"version": version, "model": model_name, **metrics, "bucket": bucket, "key": model_key},
        )
    ]
    if promote:
        touched.append(
            Touched(
                object_asset_key(bucket, LATEST_KEY),
                "latest fraud model",
                {"version": version, "bucket": bucket, "key": LATEST_KEY},
            )
        )
    return touched


def _comparison(version: str, window: str, metrics: dict[str, dict[str, float]]) -> str:
    """The candidates' scores as a Markdown table, for the step's preview."""
    return "\n".join(
        [
            f"**Fraud model {version}** ({window})",
            "",
            "| model | AUC ROC | avg precision | card precision@100 |",
            "|---|---|---|---|",
            *(
                f"| {name} | {m['auc_roc']:.3f} | {m['average_precision']:.3f} | {m['card_precision_at_100']:.3f} |"
                for name, m in metrics.items()
            ),
        ]
    )


FRAUD = plugin(
    "fraud",
    "Fraud models: train and evaluate on the handbook's protocol, store the best for scoring; start, stop and "
    "replay the real-time fraud stream",
    "object_store",
    Action(
        "trainModel",
        TrainModelInput,
        train_model,
        "Fit models on a feature table's training window, measure them on its test window (AUC ROC, average "
        "precision, card precision@100) and store the best under models/fraud/.",
    ),
    *STREAM_ACTIONS,
)
