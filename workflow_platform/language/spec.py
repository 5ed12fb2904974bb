"""The workflow language as typed models (DESIGN §4).

The original files (`name`, `description`, `steps[]` with `id/plugin/action/needs/input`) are valid as they are;
everything else is an optional extension. Unknown keys are rejected so a typo never silently does nothing.
"""

from __future__ import annotations

import re
from typing import Any, Literal

from croniter import croniter
from pydantic import BaseModel, ConfigDict, Field, field_validator

NAME_PATTERN = r"^[A-Za-z0-9_-]{1,255}$"
STEP_ID_PATTERN = r"^[A-Za-z0-9_-]{1,128}$"
PARAM_NAME_PATTERN = r"^[A-Za-z_][A-Za-z0-9_]{0,63}$"


def check_timezone(value: str) -> str:
    from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(
            f"unknown timezone '{value}' (use an IANA name such as 'UTC' or 'Europe/Paris')"
        ) from None
    return value


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class RetrySpec(_Strict):
    """How often and how fast a failed step is tried again (becomes a Dagster RetryPolicy)."""

    maxAttempts: int = Field(3, ge=1, le=100, description="attempts in total, the first one included")
    backoff: Literal["fixed", "exponential"] = "fixed"
    delayMs: int = Field(1000, ge=0, le=3_600_000, description="wait before the first retry, in ms")
    jitter: bool = Field(False, description="randomise each wait (full jitter) so retries do not stampede")


class DefaultsSpec(_Strict):
    """Settings applied to every step that does not set its own."""

    retry: RetrySpec | None = None
    timeout: int | None = Field(None, gt=0, description="ms")


ParamType = Literal["string", "integer", "number", "boolean", "object", "array"]


class ParamSpec(_Strict):
    """A declared run parameter, exposed as Dagster run config and as `{{ params.<name> }}`."""

    type: ParamType = "string"
    default: Any = None
    description: str | None = None


class ScheduleSpec(_Strict):
    """Run the workflow on a cron schedule (becomes a Dagster ScheduleDefinition)."""

    cron: str = Field(description="cron expression, e.g. '0 6 * * *'")
    timezone: str = "UTC"
    params: dict[str, Any] = Field(default_factory=dict, description="param values for scheduled runs")

    @field_validator("cron")
    @classmethod
    def _valid_cron(cls, value: str) -> str:
        if not is_valid_cron(value):
            raise ValueError(f"'{value}' is not a valid cron expression (five fields, e.g. '0 6 * * *')")
        return value

    @field_validator("timezone")
    @classmethod
    def _known_timezone(cls, value: str) -> str:
        return check_timezone(value)


class PartitionsSpec(_Strict):
    """Daily partitions on a date param: each run is one day; a date range is a Dagster backfill."""

    type: Literal["daily"] = "daily"
    param: str = Field(description="the string param that receives the partition's date (YYYY-MM-DD)")
    start: str = Field(pattern=r"^\d{4}-\d{2}-\d{2}$", description="first date, YYYY-MM-DD")
    timezone: str = "UTC"

    @field_validator("timezone")
    @classmethod
    def _known_timezone(cls, value: str) -> str:
        return check_timezone(value)


class TriggerSpec(_Strict):
    """Run the workflow when new rows arrive in a table (becomes a Dagster sensor with a cursor and run keys).

    Each run gets one batch: `{{ trigger.after }} < column <= {{ trigger.through }}` (also `trigger.count`,
    `trigger.table`). The column must be filled by a sequence (bigserial, identity; CACHE 1): a batch only reaches ids
    below which no transaction still in progress can commit a row, so no row is skipped (row_cursor.py)."""

    type: Literal["postgres"] = "postgres"
    table: str = Field(min_length=1, description="schema-qualified table, e.g. orchestrator.transactions")
    column: str = Field("id", min_length=1, description="an integer column filled by a sequence (the cursor)")
    batchSize: int = Field(1000, ge=1, le=1_000_000, description="rows per run at most")
    intervalSeconds: int = Field(30, ge=1, le=86_400, description="how often the sensor looks")
    startAfter: int | Literal["latest"] = Field(
        0,
        description="the cursor's first value: rows above it are processed; `latest`: only rows that arrive "
        "after the sensor's first evaluation (a backlog already in the table is left alone)",
    )


class StepSpec(_Strict):
    """One step: one action of one plugin."""

    id: str = Field(
        pattern=STEP_ID_PATTERN, description="unique within the workflow; letters, digits, - and _"
    )
    plugin: str = Field(min_length=1)
    action: str = Field(min_length=1)
    needs: list[str] = Field(default_factory=list, description="ids of the steps that must succeed first")
    input: dict[str, Any] = Field(
        default_factory=dict, description="the action's input; strings may hold {{ }}"
    )
    retry: RetrySpec | None = None
    timeout: int | None = Field(None, gt=0, description="ms; the step fails with a timeout error past it")
    description: str | None = None
    tags: dict[str, str] = Field(default_factory=dict)


RESERVED_TAG_PREFIXES = ("wfp/", "dagster/", ".dagster")


class WorkflowSpec(_Strict):
    """A workflow.json document."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={"title": "workflow.json"})

    name: str = Field(pattern=NAME_PATTERN)
    description: str | None = None
    steps: list[StepSpec] = Field(min_length=1, max_length=500)
    params: dict[str, ParamSpec] = Field(default_factory=dict)
    schedule: ScheduleSpec | None = None
    partitions: PartitionsSpec | None = None
    trigger: TriggerSpec | None = None
    defaults: DefaultsSpec | None = None
    tags: dict[str, str] = Field(default_factory=dict)
    executor: Literal["in_process", "multiprocess"] = Field(
        "in_process",
        description="in_process: fastest for I/O steps; multiprocess: independent steps in parallel",
    )

    @field_validator("tags")
    @classmethod
    def _own_tags(cls, value: dict[str, str]) -> dict[str, str]:
        # The platform's and Dagster's tags (wfp/workflow: concurrency limits, the API's filters) are not the
        # workflow's to set.
        for key in value:
            if key.startswith(RESERVED_TAG_PREFIXES):
                raise ValueError(f"tag '{key}' is reserved (prefixes {', '.join(RESERVED_TAG_PREFIXES)})")
        return value

    @field_validator("params")
    @classmethod
    def _param_names(cls, value: dict[str, ParamSpec]) -> dict[str, ParamSpec]:
        for name in value:
            if not re.match(PARAM_NAME_PATTERN, name):
                raise ValueError(f"param name '{name}' must match {PARAM_NAME_PATTERN}")
        return value

    def step(self, step_id: str) -> StepSpec:
        return next(s for s in self.steps if s.id == step_id)

    def retry_for(self, step: StepSpec) -> RetrySpec | None:
        return step.retry or (self.defaults.retry if self.defaults else None)

    def timeout_for(self, step: StepSpec) -> int | None:
        return step.timeout or (self.defaults.timeout if self.defaults else None)


def dagster_name(name: str) -> str:
    """Dagster names allow letters, digits and _ only: 'run-pathway' -> 'run_pathway'."""
    return re.sub(r"[^A-Za-z0-9_]", "_", name)


def job_name(spec: WorkflowSpec) -> str:
    return dagster_name(spec.name)


def is_valid_cron(expression: str) -> bool:
    """What Dagster schedules accept: five fields (no seconds), and no 30th or 31st of February."""
    if not croniter.is_valid(expression):
        return False
    fields = croniter.expand(expression)[0]
    if len(fields) != 5:
        return False
    return not (fields[3] == [2] and len(fields[2]) == 1 and fields[2][0] in {30, 31})
