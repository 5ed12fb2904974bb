"""What launches a workflow's runs besides a person: its schedule (cron, or daily partitions) and its sensor on
new rows of a table (DESIGN §1, §6). The sensor reads the table through the code location's `postgres` resource."""

import json
from datetime import datetime
from zoneinfo import ZoneInfo

import dagster as dg

from workflow_platform.language.spec import TriggerSpec, WorkflowSpec
from workflow_platform.orchestration.partitions import previous_day
from workflow_platform.orchestration.row_cursor import RowCursor, next_batches, start_at_latest
from workflow_platform.orchestration.workflow_run import TRIGGER_TAG, params_run_config
from workflow_platform.resources.postgres import PostgresResource


def build_schedule(spec: WorkflowSpec, job: dg.JobDefinition) -> dg.ScheduleDefinition | None:
    if spec.schedule is None:
        return None
    schedule = spec.schedule
    common = {
        "name": f"{job.name}_schedule",
        "cron_schedule": schedule.cron,
        "execution_timezone": schedule.timezone,
        "job": job,
        "default_status": dg.DefaultScheduleStatus.RUNNING,
        "description": f"{spec.name} on '{schedule.cron}' ({schedule.timezone})",
    }
    if spec.partitions is None:
        return dg.ScheduleDefinition(
            run_config=params_run_config(schedule.params) if schedule.params else None, **common
        )
    param = spec.partitions.param

    def previous_day_run(context: dg.ScheduleEvaluationContext) -> dg.RunRequest:
        # Each tick reports on the day before it, in the schedule's timezone; the run key makes a tick
        # evaluated twice launch one run.
        tick = context.scheduled_execution_time or datetime.now(ZoneInfo(schedule.timezone))
        day = previous_day(tick.astimezone(ZoneInfo(schedule.timezone)))
        return dg.RunRequest(
            run_key=day, partition_key=day, run_config=params_run_config({**schedule.params, param: day})
        )

    return dg.ScheduleDefinition(execution_fn=previous_day_run, **common)


def build_sensor(spec: WorkflowSpec, job: dg.JobDefinition) -> dg.SensorDefinition | None:
    """One run per batch of new rows of the trigger table. A batch only reaches up to a settled value (see
    row_cursor): no row is skipped when transactions commit out of id order, at the cost that a transaction
    writing the table and left open holds back later batches until it ends. Run keys name the rows, so a batch
    is never launched twice (Dagster also resumes a tick interrupted after its runs were reserved)."""
    if spec.trigger is None:
        return None
    trigger = spec.trigger

    def new_rows(context: dg.SensorEvaluationContext) -> dg.SensorResult:
        postgres: PostgresResource = context.resources.postgres
        if not context.cursor and trigger.startAfter == "latest":
            start = start_at_latest(postgres, trigger)
            if start.starting:
                return dg.SensorResult(skip_reason=_skip_reason(trigger, start), cursor=start.dump())
            return dg.SensorResult(
                skip_reason=f"started: rows of {trigger.table} with {trigger.column} > {start.after} will be processed",
                cursor=start.dump(),
            )
        previous = (
            RowCursor.parse(context.cursor) if context.cursor else RowCursor.start(int(trigger.startAfter))
        )
        state, batches = next_batches(postgres, trigger, previous)
        if not batches:
            return dg.SensorResult(skip_reason=_skip_reason(trigger, state, previous), cursor=state.dump())
        requests = [
            dg.RunRequest(
                # The run key names the rows: a tick evaluated again from the same cursor (a daemon restarted
                # mid-tick) makes the same keys, and Dagster launches a key once.
                run_key=f"{trigger.table}:{batch['after']}-{batch['through']}",
                tags={TRIGGER_TAG: json.dumps(batch)},
            )
            for batch in batches
        ]
        return dg.SensorResult(run_requests=requests, cursor=state.dump())

    return dg.SensorDefinition(
        name=f"{job.name}_on_new_rows",
        evaluation_fn=new_rows,
        job=job,
        required_resource_keys={"postgres"},  # service_resources(), bound in the Definitions
        minimum_interval_seconds=trigger.intervalSeconds,
        default_status=dg.DefaultSensorStatus.RUNNING,
        description=f"runs {spec.name} for each batch of up to {trigger.batchSize} new rows of {trigger.table}",
    )


def _skip_reason(trigger: TriggerSpec, state: RowCursor, previous: RowCursor | None = None) -> str:
    if state.starting and not state.waiting:
        return (
            f"{trigger.table} is empty: startAfter latest takes the first rows loaded into it as history and "
            f"processes the rows committed after them (startAfter 0 processes every row)"
        )
    if previous is not None and previous.starting and not state.starting:
        return (
            f"started after the first rows loaded into {trigger.table}: rows with {trigger.column} > "
            f"{state.after} will be processed"
        )
    if state.waiting:
        return (
            f"waiting for {len(state.waiting)} transaction(s) writing {trigger.table} to end: rows with "
            f"{trigger.column} <= {state.pending} are processed once no transaction can still commit one below it"
        )
    return f"no rows in {trigger.table} with {trigger.column} > {state.after}"
