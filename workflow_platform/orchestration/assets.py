"""Stable Dagster assets declared from workflow.json, and the runs' asset events recorded against them (DESIGN §6).

What each step reads and writes is found by static analysis of its input, per action: the table of a postgres
step (the tables after FROM/JOIN of a query, the target of INSERT/UPDATE/DELETE), the object key of a minio step,
the subject of a nats step, the fraud model of `fraud.trainModel` and of the Pathway pipeline that scores with
it. One asset per logical dataset:

- a table: `postgres/<schema>/<table>`; a NATS subject: `nats/<subject parts>`;
- an object key: `s3/<key parts>`; a templated key is one asset per pattern, the templated parts left out
  (`reports/daily-sales-{{ params.report_date }}.html` -> `s3/reports/daily-sales.html`); the bucket is
  metadata, not part of the key;
- the fraud model: `s3/models/fraud` (every version, the promoted one named in models/fraud/latest.json);
- a step that writes none of these (a query, a Pathway pipeline, a rendered page): `<workflow>/<step>`, its
  result observed when it is stored by reference (a result passed in memory is in the run's step output).

Edges follow the data: a step's assets depend on what it reads and on the assets of the upstream steps its
templates reference (its `needs` when it references none). Datasets of a partitioned workflow whose key carries
the partition param, and its step results, are partitioned like the workflow. Runs map each `Touched` of a step
to these keys; the concrete object key, etag, size and row count stay in the event's metadata.
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import dagster as dg

from workflow_platform.fraud import MODEL_PREFIX
from workflow_platform.language.spec import StepSpec, WorkflowSpec
from workflow_platform.language.templates import analyze, contains_template
from workflow_platform.language.validate import ancestors, template_strings
from workflow_platform.plugins import Touched

FRAUD_MODEL = dg.AssetKey(["s3", *MODEL_PREFIX.split("/")])
# Pathway pipelines that read the fraud model, which the step's input does not name: the scoring pipeline loads
# the version the request names (`latest` or a version) from the object store.
PIPELINES_READING_THE_MODEL = frozenset({"fraud-detection-pipeline"})

_TEMPLATE = re.compile(r"{{.*?}}", re.DOTALL)
_SEPARATORS = re.compile(r"[-_.]{2,}")
# A query's tables: the schema-qualified names after FROM/JOIN (read) and INSERT/UPDATE/DELETE/MERGE (written).
# Unqualified names are left out (a CTE or a column in EXTRACT(... FROM col) looks the same); so are literals,
# comments and the FROM inside function calls.
_QUALIFIED = r"([A-Za-z_][A-Za-z0-9_$]*\.[A-Za-z_][A-Za-z0-9_$]*)\b"
_SQL_READS = re.compile(rf"\b(?:FROM|JOIN)\s+{_QUALIFIED}(?!\s*\()", re.IGNORECASE)  # not schema.function(
_SQL_WRITES = re.compile(
    rf"\b(?:INSERT\s+INTO|UPDATE|DELETE\s+FROM|MERGE\s+INTO)\s+{_QUALIFIED}", re.IGNORECASE
)
_SQL_NOISE = re.compile(
    r"'(?:[^']|'')*'|--[^\n]*|/\*.*?\*/|\b(?:EXTRACT|SUBSTRING|TRIM|OVERLAY|POSITION)\s*\([^()]*\)|\bDISTINCT\s+FROM\b",
    re.IGNORECASE | re.DOTALL,
)
_WRITE_ACTIONS = {"insert", "upsert", "update", "updateRows", "delete"}


@dataclass(frozen=True)
class Dataset:
    """A table, object key pattern or subject a step reads or writes, under its stable asset key."""

    key: dg.AssetKey
    kind: str  # postgres | s3 | nats
    pattern: re.Pattern[str]  # the concrete names it covers: table, object key, subject
    template: str  # as written in workflow.json
    partitioned: bool = False


@dataclass(frozen=True)
class StepLineage:
    workflow: str
    step: str
    reads: tuple[Dataset, ...]
    writes: tuple[Dataset, ...]
    depends_on: tuple[str, ...]  # upstream steps whose assets feed this one
    partitioned: bool

    @property
    def result_key(self) -> dg.AssetKey:
        """The step's own asset: its result, when it writes no dataset; what an unforeseen touch falls back to."""
        return dg.AssetKey([self.workflow, self.step])

    @property
    def asset_keys(self) -> tuple[dg.AssetKey, ...]:
        return tuple(d.key for d in self.writes) or (self.result_key,)


def workflow_lineage(spec: WorkflowSpec) -> dict[str, StepLineage]:
    graph = {s.id: list(s.needs) for s in spec.steps}
    step_ids = set(graph)
    partition_param = spec.partitions.param if spec.partitions else None
    lineage = {}
    for step in spec.steps:
        referenced: set[str] = set()
        for _, text in template_strings(step.input):
            referenced |= analyze(text, set(spec.params), step_ids).steps
        upstream = referenced & ancestors(graph, step.id)
        reads, writes = _datasets(step, partition_param)
        lineage[step.id] = StepLineage(
            workflow=spec.name,
            step=step.id,
            reads=reads,
            writes=writes,
            depends_on=tuple(sorted(upstream or step.needs)),
            partitioned=partition_param is not None,
        )
    return lineage


def _datasets(step: StepSpec, partition_param: str | None) -> tuple[tuple[Dataset, ...], tuple[Dataset, ...]]:
    data = step.input
    action = f"{step.plugin}.{step.action}"
    if step.plugin == "postgres" and step.action == "select":
        return _tables([data.get("table")]), ()
    if step.plugin == "postgres" and step.action == "query":
        sql = data.get("sql")
        if not isinstance(sql, str):
            return (), ()
        sql = _SQL_NOISE.sub(" ", sql)
        writes = _tables(_SQL_WRITES.findall(sql))
        written = {d.key for d in writes}
        return tuple(d for d in _tables(_SQL_READS.findall(sql)) if d.key not in written), writes
    if step.plugin == "postgres" and step.action in _WRITE_ACTIONS:
        return (), _tables([data.get("table")])
    if action == "minio.putObject":
        return (), _objects(data.get("key"), partition_param)
    if action == "minio.getObject":
        return _objects(data.get("key"), partition_param), ()
    if step.plugin == "nats" and step.action in ("publish", "publishEach"):
        return (), _subjects(data.get("subject"), partition_param)
    if action == "fraud.trainModel":
        return (), (_model(),)
    if action == "pathway.runPipeline":
        return ((_model(),) if data.get("pipelineId") in PIPELINES_READING_THE_MODEL else ()), ()
    return (), ()


def _tables(names: Iterable[Any]) -> tuple[Dataset, ...]:
    found: dict[dg.AssetKey, Dataset] = {}
    for name in names:
        # A templated table name is not known before the run: its touches fall back to the step's asset.
        if not isinstance(name, str) or not name or contains_template(name):
            continue
        schema, table = name.split(".", 1) if "." in name else ("public", name)
        key = dg.AssetKey(["postgres", schema, table])
        found[key] = Dataset(key, "postgres", re.compile(re.escape(f"{schema}.{table}")), name)
    return tuple(found.values())


def _named(kind: str, value: Any, separator: str, partition_param: str | None) -> tuple[Dataset, ...]:
    """A dataset named by a (templated) object key or subject: its literal parts, the templated ones left out."""
    if not isinstance(value, str) or not value:
        return ()
    parts = []
    # Templates out first: a template's own text may hold the separator (date('YYYY-MM-DD/HH')).
    for part in _TEMPLATE.sub("", value).split(separator):
        literal = _SEPARATORS.sub(lambda m: m.group(0)[-1], part).strip("-_.")
        if literal:
            parts.append(literal)
    if not parts:  # a name computed entirely at run time: touches fall back to the step's asset
        return ()
    pattern = ".+".join(re.escape(literal) for literal in _TEMPLATE.split(value))
    partitioned = partition_param is not None and any(
        partition_param in analyze(text.group(0), {partition_param}, set()).params
        for text in _TEMPLATE.finditer(value)
    )
    return (Dataset(dg.AssetKey([kind, *parts]), kind, re.compile(pattern), value, partitioned),)


def _objects(key: Any, partition_param: str | None) -> tuple[Dataset, ...]:
    if isinstance(key, str) and key.startswith(f"{MODEL_PREFIX}/"):
        return (_model(),)
    return _named("s3", key, "/", partition_param)


def _subjects(subject: Any, partition_param: str | None) -> tuple[Dataset, ...]:
    return _named("nats", subject, ".", partition_param)


def _model() -> Dataset:
    return Dataset(FRAUD_MODEL, "s3", re.compile(re.escape(MODEL_PREFIX) + "/.+"), f"{MODEL_PREFIX}/")


# ---- declarations ------------------------------------------------------------------------------------------


@dataclass
class _Declared:
    key: dg.AssetKey
    kind: str
    deps: set[dg.AssetKey] = field(default_factory=set)
    writers: list[str] = field(default_factory=list)  # "<workflow>/<step>"
    readers: list[str] = field(default_factory=list)
    workflows: set[str] = field(default_factory=set)  # that write it (or whose step it is)
    templates: set[str] = field(default_factory=set)
    partitions: set[str] = field(default_factory=set)  # workflows whose partitions it has
    step: tuple[WorkflowSpec, StepSpec] | None = None


def asset_specs(specs: Iterable[WorkflowSpec]) -> list[dg.AssetSpec]:
    """The assets of all workflows, with their dependencies across workflows (a model one trains, another
    reads). An edge that would close a cycle (a step that writes the table its own upstream read) is left out of
    the graph and named in the asset's metadata; the writes are still recorded as materializations."""
    specs = list(specs)
    by_name = {spec.name: spec for spec in specs}
    declared: dict[dg.AssetKey, _Declared] = {}

    def entry(key: dg.AssetKey, kind: str) -> _Declared:
        return declared.setdefault(key, _Declared(key, kind))

    edges: list[tuple[dg.AssetKey, dg.AssetKey]] = []  # (upstream, downstream)
    for spec in specs:
        lineage = workflow_lineage(spec)
        for step in spec.steps:
            node = lineage[step.id]
            where = f"{spec.name}/{step.id}"
            upstream = [key for dep in node.depends_on for key in lineage[dep].asset_keys]
            for dataset in node.reads:
                entry(dataset.key, dataset.kind).readers.append(where)
                entry(dataset.key, dataset.kind).templates.add(dataset.template)
            if not node.writes:
                own = entry(node.result_key, step.plugin)
                own.step = (spec, step)
                own.workflows.add(spec.name)
                if node.partitioned:
                    own.partitions.add(spec.name)
            for dataset in node.writes:
                written = entry(dataset.key, dataset.kind)
                written.writers.append(where)
                written.workflows.add(spec.name)
                written.templates.add(dataset.template)
                if dataset.partitioned:
                    written.partitions.add(spec.name)
            for key in node.asset_keys:
                edges += [(dataset.key, key) for dataset in node.reads]
                edges += [(up, key) for up in upstream]
    left_out = _acyclic(edges, declared)
    return [_asset_spec(d, by_name, left_out.get(d.key, [])) for d in declared.values()]


def _acyclic(
    edges: list[tuple[dg.AssetKey, dg.AssetKey]], declared: dict[dg.AssetKey, _Declared]
) -> dict[dg.AssetKey, list[dg.AssetKey]]:
    downstream: dict[dg.AssetKey, set[dg.AssetKey]] = defaultdict(set)
    left_out: dict[dg.AssetKey, list[dg.AssetKey]] = defaultdict(list)

    def reaches(start: dg.AssetKey, target: dg.AssetKey) -> bool:
        seen, stack = set(), [start]
        while stack:
            node = stack.pop()
            if node == target:
                return True
            if node not in seen:
                seen.add(node)
                stack.extend(downstream[node])
        return False

    for up, down in edges:
        if up == down or reaches(down, up):
            if up not in left_out[down]:
                left_out[down].append(up)
            continue
        downstream[up].add(down)
        declared[down].deps.add(up)
    return left_out


def _asset_spec(
    declared: _Declared, workflows: Mapping[str, WorkflowSpec], left_out: list[dg.AssetKey]
) -> dg.AssetSpec:
    owner_specs = [workflows[name] for name in sorted(declared.workflows)]
    metadata: dict[str, Any] = {}
    if declared.writers:
        metadata["written_by"] = ", ".join(declared.writers)
    if declared.readers:
        metadata["read_by"] = ", ".join(declared.readers)
    if declared.templates:
        metadata["declared_as"] = ", ".join(sorted(declared.templates))
    if left_out:
        metadata["not_drawn"] = (
            "also fed by " + ", ".join(k.to_user_string() for k in left_out) + " (a cycle)"
        )
    partitions_def = None
    if len(declared.partitions) == 1 and declared.partitions == declared.workflows:
        partitions_def = workflow_partitions(workflows[next(iter(declared.partitions))])
    if declared.step is not None:
        spec, step = declared.step
        description = f"Result of step {step.id} of {spec.name} ({step.plugin}.{step.action})" + (
            f": {step.description}" if step.description else ""
        )
        group = _group(spec.name)
        kinds = {step.plugin}
    else:
        what = {"postgres": "Table", "s3": "Objects", "nats": "Messages on subject"}[declared.kind]
        name = ".".join(declared.key.path[1:]) if declared.kind != "s3" else "/".join(declared.key.path[1:])
        description = f"{what} {name}" + (
            f", written by {', '.join(declared.writers)}" if declared.writers else " (read only)"
        )
        if declared.key == FRAUD_MODEL:
            description = f"The fraud model: every trained version under {MODEL_PREFIX}/, the promoted one named in {MODEL_PREFIX}/latest.json"
        single = len(declared.workflows) == 1 and declared.kind != "postgres"
        group = _group(owner_specs[0].name) if single else declared.kind
        kinds = {declared.kind, "table"} if declared.kind == "postgres" else {declared.kind}
    owners = sorted({f"team:{s.tags['team']}" for s in owner_specs if s.tags.get("team")})
    return dg.AssetSpec(
        key=declared.key,
        deps=sorted(declared.deps, key=lambda k: k.to_user_string()),
        description=description,
        group_name=group,
        kinds=kinds,
        owners=owners,
        metadata=metadata,
        partitions_def=partitions_def,
    )


def _group(workflow: str) -> str:
    return re.sub(r"[^A-Za-z0-9_]", "_", workflow)  # group names allow letters, digits and _


def workflow_partitions(spec: WorkflowSpec) -> dg.DailyPartitionsDefinition | None:
    """The workflow's days: its runs' partitions and its partitioned assets'. end_offset=1: today is a partition
    too, so the day so far can be reported on demand."""
    if spec.partitions is None:
        return None
    return dg.DailyPartitionsDefinition(
        start_date=spec.partitions.start, timezone=spec.partitions.timezone, end_offset=1
    )


# ---- what a run records ------------------------------------------------------------------------------------


def asset_events(
    lineage: StepLineage, touched: Iterable[Touched], partition: str | None
) -> list[dg.AssetMaterialization | dg.AssetObservation]:
    """The step's touches as events of its stable assets: a dataset written is materialized, one read or the
    step's own result stored by reference is observed. Several touches of one asset (a model and latest.json)
    make one event. A result passed in memory is not observed: the run's STEP_OUTPUT already records it, and an
    event per step would cost each step ~2 ms of the warm worker's budget (bench/step_overhead.py)."""
    grouped: dict[tuple[dg.AssetKey, bool], list[tuple[Touched, Dataset | None]]] = defaultdict(list)
    for item in touched:
        dataset = _dataset_of(lineage, item)
        key = dataset.key if dataset else _undeclared_key(lineage, item)
        wrote = item.wrote and dataset is not None and dataset in lineage.writes
        grouped[(key, wrote)].append((item, dataset))
    events = []
    for (key, wrote), items in grouped.items():
        metadata: dict[str, Any] = {"workflow": lineage.workflow, "step": lineage.step}
        for item, _ in items:
            metadata.update(item.metadata)
        objects = [_concrete(item) for item, _ in items]
        metadata["object" if len(objects) == 1 else "objects"] = objects[0] if len(objects) == 1 else objects
        dataset = items[0][1]
        partitioned = dataset.partitioned if dataset else lineage.partitioned and key == lineage.result_key
        event_type = dg.AssetMaterialization if wrote else dg.AssetObservation
        description = "; ".join(dict.fromkeys(item.description for item, _ in items))
        events.append(
            event_type(
                asset_key=key,
                description=f"{description} by step {lineage.step} of {lineage.workflow}",
                metadata=metadata,
                partition=partition if partitioned else None,
            )
        )
    return events


def _dataset_of(lineage: StepLineage, touched: Touched) -> Dataset | None:
    kind, *rest = touched.asset_key
    if kind == "s3":
        name = "/".join(rest[1:])  # after the bucket
    elif kind in ("postgres", "nats"):
        name = ".".join(rest)
    else:
        return None
    for dataset in (*lineage.writes, *lineage.reads):
        if dataset.kind == kind and dataset.pattern.fullmatch(name):
            return dataset
    return None


def _undeclared_key(lineage: StepLineage, touched: Touched) -> dg.AssetKey:
    # A table is a stable name on its own; anything else (a result stored by reference, a Pathway pipeline run,
    # an object under a computed key) is recorded on the step's asset, never as a key per object.
    if touched.asset_key[0] == "postgres":
        return dg.AssetKey(list(touched.asset_key))
    return lineage.result_key


def _concrete(touched: Touched) -> str:
    kind, *rest = touched.asset_key
    if kind == "s3":
        return f"s3://{rest[0]}/{'/'.join(rest[1:])}"
    return f"{kind}:{'.'.join(rest)}"
