"""The fraud stream in Dagster: the external asset `fraud_stream`, its check `fraud_stream_is_flowing` (which
"Execute check" in the UI runs on its own) and the sensor `fraud_stream_health` that every SENSOR_INTERVAL_S
records the stream's figures as an observation and the same check's verdict (fraud_stream_health.py)."""

from __future__ import annotations

from collections.abc import Collection

import dagster as dg

from workflow_platform.orchestration.assets import FRAUD_MODEL
from workflow_platform.orchestration.fraud_stream_health import StreamHealth, current_health
from workflow_platform.resources.fraud_stream_control import BUCKET
from workflow_platform.resources.nats import NatsResource

FRAUD_STREAM = dg.AssetKey("fraud_stream")
CHECK_NAME = "fraud_stream_is_flowing"
SENSOR_INTERVAL_S = 30
# With the batch scoring's assets: assets.py names groups after their workflow.
GROUP = "fraud_detection_workflow"


def fraud_stream_spec(declared: Collection[dg.AssetKey]) -> dg.AssetSpec:
    """The stream as an asset no run materializes; it reads the fraud model when the training workflow that
    stores it is loaded (`declared`: the code location's other assets)."""
    return dg.AssetSpec(
        key=FRAUD_STREAM,
        description=(
            "Real-time fraud scoring: a long-running Pathway pipeline (`python -m workflow_platform.fraud_stream`, "
            "started by `wfp up`) reading NATS transactions.new, scoring each with the latest model, publishing "
            "fraud.alerts and writing the scores to orchestrator.transactions. Start, stop or replay it with the "
            f"fraud plugin's startStream, stopStream and replayStream actions (NATS key-value bucket {BUCKET})."
        ),
        deps=[FRAUD_MODEL] if FRAUD_MODEL in declared else [],
        group_name=GROUP,
        kinds={"pathway", "nats"},
        metadata={"process": "python -m workflow_platform.fraud_stream", "control_bucket": BUCKET},
    )


@dg.asset_check(
    asset=FRAUD_STREAM,
    name=CHECK_NAME,
    description="The supervisor reports, the stream runs (or was stopped on purpose) and scores what arrives.",
)
def fraud_stream_is_flowing(nats: NatsResource) -> dg.AssetCheckResult:
    health = current_health(nats)
    return dg.AssetCheckResult(
        passed=health.passed,
        severity=dg.AssetCheckSeverity.ERROR,
        description=health.description,
        metadata=health.metadata,
    )


@dg.sensor(
    name="fraud_stream_health",
    minimum_interval_seconds=SENSOR_INTERVAL_S,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description=f"records the fraud stream's lag, offsets and throughput and the check {CHECK_NAME}",
)
def fraud_stream_health(nats: NatsResource) -> dg.SensorResult:
    health = current_health(nats)
    # The verdict as the tick's reason too: the sensor's page then lists the stream's history at a glance.
    verdict = f"{CHECK_NAME} {'passed' if health.passed else 'failed'}: {health.description}"
    return dg.SensorResult(asset_events=health_events(health), skip_reason=verdict)


def health_events(health: StreamHealth) -> list[dg.AssetObservation | dg.AssetCheckEvaluation]:
    """The verdict as the check's evaluation, after an observation of the figures when there is a status."""
    events: list[dg.AssetObservation | dg.AssetCheckEvaluation] = []
    if health.metadata:
        events.append(
            dg.AssetObservation(
                asset_key=FRAUD_STREAM, description=health.description, metadata=health.metadata
            )
        )
    events.append(
        dg.AssetCheckEvaluation(
            asset_key=FRAUD_STREAM,
            check_name=CHECK_NAME,
            passed=health.passed,
            severity=dg.AssetCheckSeverity.ERROR,
            description=health.description,
            metadata=health.metadata,
        )
    )
    return events
