"""The model to score with: the one `models/fraud/latest.json` names, looked up again every few seconds.

The training workflow stores a model and then moves the pointer (`fraud.model.save_model`), so a new version is
picked up within `check_seconds` of its promotion, without a restart. Versions never change once stored.

A `hist_gradient_boosting` model's trees are compiled (`fraud.compiled`): before the first transaction for the
model the pipeline starts with, on a thread of their own for a version promoted later (it scores through
scikit-learn meanwhile). The compiled trees serve only if their first batch's probabilities equal
scikit-learn's (to 1e-9, as the stream's scores must equal the batch path's).
"""

from __future__ import annotations

import logging
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from workflow_platform.fraud import NO_MODEL, latest_version
from workflow_platform.fraud.compiled import Predict, compiled_predictor, remove_unfinished
from workflow_platform.fraud.model import FraudModel, load_model

if TYPE_CHECKING:
    from minio import Minio

log = logging.getLogger(__name__)

SAME = 1e-9  # the largest difference from scikit-learn's probabilities a compiled model may show


class LatestModel:
    def __init__(self, client: Minio, bucket: str, check_seconds: float, compiled_dir: Path) -> None:
        """`compiled_dir`: where compiled models are kept (the pipeline's own directory)."""
        self._client, self._bucket, self._check_seconds = client, bucket, check_seconds
        self._compiled_dir = compiled_dir
        remove_unfinished(compiled_dir)
        self._compiled: dict[str, Predict] = {}  # version -> its compiled trees, once built
        self._verified: set[str] = set()  # versions whose compiled trees gave scikit-learn's probabilities
        self._model = self._load(self._latest_version(), wait=True)
        self._checked = time.monotonic()

    def _current(self) -> FraudModel:
        """The latest model; a failed look-up keeps the one in use (the object store may be down a moment)."""
        if time.monotonic() - self._checked >= self._check_seconds:
            self._checked = time.monotonic()
            try:
                version = self._latest_version()
                if version != self._model.version:
                    self._model = self._load(version)
            except Exception as exc:  # any failure of the store: keep scoring with the model in use
                log.warning("cannot look up the latest model, keeping %s: %s", self._model.version, exc)
        return self._model

    def score(self, features: pd.DataFrame) -> tuple[np.ndarray, str]:
        """The latest model's fraud probability for each row of `features` (every FEATURES column), and its
        version."""
        model = self._current()
        frame = features[model.features]
        compiled = self._compiled.get(model.version)
        if compiled is None:
            return model.estimator.predict_proba(frame)[:, 1], model.version
        scores = compiled(frame)
        if model.version not in self._verified:
            expected = model.estimator.predict_proba(frame)[:, 1]
            if not np.allclose(scores, expected, rtol=0, atol=SAME):
                log.warning("compiled model %s differs from scikit-learn's: not used", model.version)
                del self._compiled[model.version]
                return expected, model.version
            self._verified.add(model.version)
            log.info("model %s now scores through its compiled trees", model.version)
        return scores, model.version

    def _load(self, version: str, wait: bool = False) -> FraudModel:
        """`wait`: compile before returning (at start: the first transactions score at full speed), else on
        a thread (a new version mid-stream: the stream goes on meanwhile)."""
        model = load_model(version, self._client, self._bucket)
        log.info("scoring with model %s (%s)", version, model.name)
        compiling = threading.Thread(
            target=self._compile, args=(model, self._compiled_dir), name="wfp-model-compiler", daemon=True
        )
        compiling.start()
        if wait:
            compiling.join()
        return model

    def _compile(self, model: FraudModel, directory: Path) -> None:
        try:
            predict = compiled_predictor(model, directory)
        except Exception as exc:  # a compiler that fails: scikit-learn's predictor serves
            log.warning("cannot compile model %s, scoring through scikit-learn: %s", model.version, exc)
            return
        if predict is not None:
            self._compiled[model.version] = predict

    def _latest_version(self) -> str:
        version = latest_version(self._client, self._bucket)
        if version is None:
            raise LookupError(NO_MODEL)
        return version
