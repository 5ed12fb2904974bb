"""The model to score with: the one `models/fraud/latest.json` names, looked up again every few seconds.

The training workflow stores a model and then moves the pointer (`fraud.model.save_model`), so a new version is
picked up within `check_seconds` of its promotion, without a restart. Versions never change once stored.
"""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING

from workflow_platform.fraud import NO_MODEL, latest_version
from workflow_platform.fraud.model import FraudModel, load_model

if TYPE_CHECKING:
    from minio import Minio

log = logging.getLogger(__name__)


class LatestModel:
    def __init__(self, client: Minio, bucket: str, check_seconds: float) -> None:
        self._client, self._bucket, self._check_seconds = client, bucket, check_seconds
        self._model = load_model(self._latest_version(), client, bucket)
        self._checked = time.monotonic()
        log.info("scoring with model %s (%s)", self._model.version, self._model.name)

    def current(self) -> FraudModel:
        """The latest model; a failed look-up keeps the one in use (the object store may be down a moment)."""
        if time.monotonic() - self._checked >= self._check_seconds:
            self._checked = time.monotonic()
            try:
                version = self._latest_version()
                if version != self._model.version:
                    self._model = load_model(version, self._client, self._bucket)
                    log.info("now scoring with model %s (%s)", version, self._model.name)
            except Exception as exc:  # any failure of the store: keep scoring with the model in use
                log.warning("cannot look up the latest model, keeping %s: %s", self._model.version, exc)
        return self._model

    def _latest_version(self) -> str:
        version = latest_version(self._client, self._bucket)
        if version is None:
            raise LookupError(NO_MODEL)
        return version
