"""Fraud detection that really detects: the handbook's features, models and evaluation.

Le Borgne et al., "Reproducible Machine Learning for Credit Card Fraud Detection - Practical Handbook":
`features` is its baseline feature transformation (the one implementation training, batch scoring and the stream
use), `model` trains, stores and loads the models, `evaluation` computes its metrics. The simulator and the
loaders are demo data (`workflow_platform.demo_data`).

Nothing here is imported by the Dagster code location unless a workflow asks for it: the modules import
numpy/pandas at top level and scikit-learn, psycopg2, minio and nats-py only inside the functions using them.
This package's own namespace stays light (the `fraud` plugin and the stream's supervisor import it).
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from minio import Minio

# Model candidates (`model.CANDIDATES`) and where models are stored: here, so that the `fraud` plugin can
# validate workflows without importing numpy, pandas and scikit-learn into the code location.
MODEL_NAMES = ("logistic_regression", "random_forest", "xgboost", "hist_gradient_boosting", "ensemble")
MODEL_PREFIX = "models/fraud"
LATEST_KEY = f"{MODEL_PREFIX}/latest.json"
NO_MODEL = "no fraud model stored yet (models/fraud/latest.json): run the fraud-model-training workflow first"


def latest_version(client: Minio, bucket: str) -> str | None:
    """The version LATEST_KEY names (`model.save_model` moves it); None if no model is stored yet."""
    from minio.error import S3Error

    from workflow_platform.resources.s3_client import read_object

    try:
        return json.loads(read_object(client, bucket, LATEST_KEY)[0])["version"]
    except S3Error as exc:
        if exc.code in ("NoSuchKey", "NoSuchBucket"):  # no model stored yet, nor anything else
            return None
        raise
