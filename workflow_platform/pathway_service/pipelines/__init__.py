"""The pipeline registry: the one place a pipeline is added.

To add one, write `pipelines/<name>.py` exporting `PIPELINE = Pipeline(...)` (see `sample.py`) and list it
below; the service then serves it at `POST /pipelines/<id>/run` and describes it in `GET /pipelines`.
"""

from __future__ import annotations

from ..pipeline import Pipeline
from . import fraud, fraud_features, risk, sales, sample

PIPELINES: dict[str, Pipeline] = {
    pipeline.id: pipeline
    for pipeline in (sample.PIPELINE, sales.PIPELINE, fraud.PIPELINE, fraud_features.PIPELINE, risk.PIPELINE)
}

__all__ = ["PIPELINES", "Pipeline"]
