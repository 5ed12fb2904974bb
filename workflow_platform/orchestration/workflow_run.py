"""What a workflow's Dagster run carries, shared by its job, its steps and its triggers: the tags that name the
workflow, the step and the trigger batch; the run config of its params; which steps read the batch."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from workflow_platform.language.spec import StepSpec, WorkflowSpec, job_name
from workflow_platform.language.templates import TemplateAnalysis, analyze
from workflow_platform.language.validate import template_strings

WORKFLOW_TAG = "wfp/workflow"
STEP_TAG = "wfp/step"
TRIGGER_TAG = "wfp/trigger"
PARAMS_RESOURCE = "workflow_params"


def params_run_config(values: Mapping[str, Any]) -> dict[str, Any]:
    """Run config that sets workflow params: what `--param k=v`, schedules and the API produce."""
    return {"resources": {PARAMS_RESOURCE: {"config": dict(values)}}}


def template_reads(step: StepSpec) -> TemplateAnalysis:
    """What the step's templates read (variables, run fields, filters), from the template parser."""
    reads = TemplateAnalysis()
    for _, text in template_strings(step.input):
        found = analyze(text, set(), set())
        reads.roots |= found.roots
        reads.run_fields |= found.run_fields
        reads.filters |= found.filters
    return reads


def reads_trigger(spec: WorkflowSpec) -> bool:
    """Whether a step's templates read `trigger`: a run needs a batch (the sensor's, or one named by hand)."""
    return any("trigger" in template_reads(step).roots for step in spec.steps)


def no_batch_message(spec: WorkflowSpec) -> str:
    table = spec.trigger.table if spec.trigger else "its table"
    return (
        f"{spec.name} works on batches of new rows of {table}: its sensor {job_name(spec)}_on_new_rows launches "
        f"its runs (wfp up, or dagster-daemon). To run one batch by hand: wfp run {spec.name} --rows AFTER:THROUGH, "
        f'or give the run the tag {TRIGGER_TAG} = {{"after": AFTER, "through": THROUGH}}'
    )
