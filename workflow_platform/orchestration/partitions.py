"""Which day a run of a daily-partitioned workflow reports on."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from workflow_platform.language.spec import WorkflowSpec


class InvalidParams(Exception):
    pass


def previous_day(moment: datetime) -> str:
    return (moment - timedelta(days=1)).date().isoformat()


def partition_params(spec: WorkflowSpec, params: Mapping[str, Any]) -> tuple[dict[str, Any], str | None]:
    """For a daily-partitioned workflow: the day to run (the param, or yesterday in the partitions' timezone)."""
    if spec.partitions is None:
        return dict(params), None
    day = params.get(spec.partitions.param) or previous_day(datetime.now(ZoneInfo(spec.partitions.timezone)))
    today = datetime.now(ZoneInfo(spec.partitions.timezone)).date()
    try:
        valid = date.fromisoformat(spec.partitions.start) <= date.fromisoformat(day) <= today
    except (TypeError, ValueError):
        valid = False
    if not valid:
        raise InvalidParams(
            f"{spec.partitions.param} must be a date YYYY-MM-DD from {spec.partitions.start} to {today}, not {day!r}"
        )
    return {**params, spec.partitions.param: day}, day
