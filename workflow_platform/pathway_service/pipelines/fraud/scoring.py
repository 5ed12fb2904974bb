"""The trained model in fraud-detection-pipeline: found in the object store when a request arrives, applied to
the window features of the request's transactions.

Models are what the fraud-model-training workflow stores (`workflow_platform.fraud.model.save_model`):
`models/fraud/<version>/model.joblib` in the platform's bucket, `models/fraud/latest.json` naming the newest.
A loaded version is kept in memory (versions never change once stored); `latest` is looked up per request, so
a newly trained model is used from the next request on.
"""

from __future__ import annotations

import functools
import json
from typing import Any

import numpy as np
import pandas as pd

from workflow_platform.fraud.features import FEATURES
from workflow_platform.fraud.model import LATEST_KEY, FraudModel, model_from_joblib, model_key, score

from ...object_store import ObjectStore, UnreadableObject
from ...staging import StagedRequest, UnreadableReference

NO_MODEL = "no model stored yet: run the fraud-model-training workflow first"


def prepare(staged: StagedRequest, store: ObjectStore) -> None:
    """Load the model the request names (`latest` or a version) into `staged.derived["model"]`."""
    wanted = staged.input.get("model")
    if wanted is None:
        return
    if wanted == "latest":
        try:
            wanted = json.loads(store.read(store.bucket, LATEST_KEY))["version"]
        except UnreadableObject:
            raise UnreadableReference("model", f"s3://{store.bucket}/{LATEST_KEY}", NO_MODEL) from None
    try:
        staged.derived["model"] = _stored_model(store, wanted)
    except UnreadableObject as exc:
        raise UnreadableReference("model", f"s3://{store.bucket}/{model_key(wanted)}", str(exc)) from None


@functools.lru_cache(maxsize=4)
def _stored_model(store: ObjectStore, version: str) -> FraudModel:
    return model_from_joblib(store.read(store.bucket, model_key(version)))


def model_scores(model: FraudModel, features: np.ndarray) -> np.ndarray:
    """The model's fraud probability for each row of a window-features matrix (FEATURES columns)."""
    if len(features) == 0:
        return np.zeros(0)
    return score(model, pd.DataFrame(features, columns=FEATURES))


def describe(model: FraudModel | None) -> dict[str, Any] | None:
    if model is None:
        return None
    return {
        "name": model.name,
        "version": model.version,
        "metrics": model.metrics,
        "createdAt": model.created_at,
    }
