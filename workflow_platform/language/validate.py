"""Static checks of a workflow document: every problem at once, each with a JSON pointer and a hint.

Nothing here talks to a service (see `preflight.py` for the checks that need the database).
"""

from __future__ import annotations

import contextlib
import graphlib
import json
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from jsonpointer import JsonPointer
from pydantic import BaseModel, ValidationError

from workflow_platform.language import json_input
from workflow_platform.language.actions import Plugin
from workflow_platform.language.problems import Problem, pointer
from workflow_platform.language.spec import ParamSpec, StepSpec, WorkflowSpec
from workflow_platform.language.templates import analyze, contains_template

PARAM_TYPES: dict[str, tuple[type, ...]] = {
    "string": (str,),
    "integer": (int,),
    "number": (int, float),
    "boolean": (bool,),
    "object": (dict,),
    "array": (list,),
}


def check_file(path: Path, registry: Mapping[str, Plugin]) -> tuple[WorkflowSpec | None, list[Problem]]:
    file = str(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None, [Problem("", "file not found", "give the path of a workflow.json", file)]
    except (OSError, UnicodeDecodeError) as error:
        return None, [Problem("", f"cannot read the file: {error}", "", file)]
    return check_text(text, file, registry)


def check_text(
    text: str, file: str, registry: Mapping[str, Plugin]
) -> tuple[WorkflowSpec | None, list[Problem]]:
    try:
        document = json_input.loads(text)
    except json.JSONDecodeError as error:
        message = f"malformed JSON: {error.msg} at line {error.lineno}, column {error.colno}"
        return None, [Problem("", message, "fix the JSON syntax (a JSON linter shows the spot)", file)]
    except json_input.JsonInputError as error:
        return None, [Problem("", str(error), "", file)]
    return check_document(document, file, registry)


def check_document(
    document: Any, file: str, registry: Mapping[str, Plugin]
) -> tuple[WorkflowSpec | None, list[Problem]]:
    """Validate a parsed document; return the spec (only when valid) and every problem found."""
    if not isinstance(document, dict):
        return None, [
            Problem("", "a workflow must be a JSON object", 'start from {"name": ..., "steps": [...]}', file)
        ]
    problems: list[Problem] = []
    spec: WorkflowSpec | None = None
    try:
        spec = WorkflowSpec.model_validate(document)
    except ValidationError as error:
        problems.extend(pydantic_problems(error, document, ""))
    steps = _valid_steps(document)
    problems.extend(_check_graph(steps))
    problems.extend(_check_actions(steps, registry))
    declared = document.get("params") if isinstance(document.get("params"), dict) else {}
    problems.extend(_check_templates(steps, set(declared)))
    if spec is not None:
        problems.extend(_check_params(spec))
    problems = sorted(_unique(problems), key=lambda p: _sort_key(p.pointer))
    problems = [Problem(p.pointer, p.message, p.hint, file) for p in problems]
    return (spec if not problems else None), problems


def _sort_key(json_pointer: str) -> list[tuple[int, int | str]]:
    return [(0, int(part)) if part.isdigit() else (1, part) for part in JsonPointer(json_pointer).parts]


def _unique(problems: list[Problem]) -> Iterator[Problem]:
    seen: set[tuple[str, str]] = set()
    for problem in problems:
        if (problem.pointer, problem.message) not in seen:
            seen.add((problem.pointer, problem.message))
            yield problem


def _valid_steps(document: dict[str, Any]) -> list[tuple[int, StepSpec]]:
    """The steps that are well-formed on their own, with their index (so later checks can still run)."""
    raw = document.get("steps")
    if not isinstance(raw, list):
        return []
    valid = []
    for index, item in enumerate(raw):
        # A malformed step is already reported by the whole-document validation.
        with contextlib.suppress(ValidationError):
            valid.append((index, StepSpec.model_validate(item)))
    return valid


# ---- pydantic errors -> problems ---------------------------------------------------------------------------


def pydantic_problems(error: ValidationError, document: Any, base: str) -> list[Problem]:
    problems = []
    for item in error.errors():
        path = _document_path(document, item["loc"])
        problems.append(Problem(base + pointer(*path), _message(item, path), _hint(item)))
    return _merge_same_pointer(problems)


def _document_path(document: Any, loc: tuple[Any, ...]) -> list[str | int]:
    """Keep the parts of pydantic's location that exist in the document (drop union member tags)."""
    path: list[str | int] = []
    node = document
    for part in loc:
        if isinstance(node, dict) and isinstance(part, str) and (part in node or part == loc[-1]):
            path.append(part)
            node = node.get(part)
        elif isinstance(node, list) and isinstance(part, int) and 0 <= part < len(node):
            path.append(part)
            node = node[part]
        else:
            continue
    return path


def _message(item: Mapping[str, Any], path: list[str | int]) -> str:
    kind = item["type"]
    got = item.get("input")
    if kind == "missing":
        return f"missing required key '{item['loc'][-1]}'"
    if kind == "extra_forbidden":
        return f"unknown key '{item['loc'][-1]}'"
    if kind == "string_pattern_mismatch":
        return f"'{got}' does not match the pattern {item.get('ctx', {}).get('pattern', '')}"
    shown = json.dumps(got, default=str)
    shown = shown if len(shown) <= 60 else shown[:57] + "..."
    message = item["msg"][0].lower() + item["msg"][1:]
    return f"{message} (got {shown})"


def _hint(item: Mapping[str, Any]) -> str:
    kind = item["type"]
    if kind == "extra_forbidden":
        return "check the spelling; `wfp schema` lists the allowed keys"
    if kind == "missing":
        return "add it; `wfp schema` describes it"
    if kind.startswith(("int_", "float_", "string_type", "bool_", "dict_", "list_")):
        return "use a value of the expected JSON type, or a {{ template }} that produces one"
    return ""


def _merge_same_pointer(problems: list[Problem]) -> list[Problem]:
    merged: dict[str, Problem] = {}
    for problem in problems:
        if problem.pointer in merged:
            first = merged[problem.pointer]
            merged[problem.pointer] = Problem(
                first.pointer, f"{first.message}; or {problem.message}", first.hint
            )
        else:
            merged[problem.pointer] = problem
    return list(merged.values())


# ---- the graph ---------------------------------------------------------------------------------------------


def _check_graph(steps: list[tuple[int, StepSpec]]) -> list[Problem]:
    problems = []
    ids: dict[str, int] = {}
    for index, step in steps:
        if step.id in ids:
            problems.append(
                Problem(
                    pointer("steps", index, "id"),
                    f"duplicate step id '{step.id}' (also used by /steps/{ids[step.id]})",
                    "give every step a unique id",
                )
            )
        else:
            ids[step.id] = index
    for index, step in steps:
        for position, need in enumerate(step.needs):
            where = pointer("steps", index, "needs", position)
            if need == step.id:
                problems.append(
                    Problem(where, f"step '{step.id}' needs itself", "remove it from its own needs")
                )
            elif need not in ids:
                known = ", ".join(sorted(ids))
                problems.append(Problem(where, f"unknown step '{need}' in needs", f"known steps: {known}"))
    cycle = find_cycle({s.id: [n for n in s.needs if n in ids and n != s.id] for _, s in steps})
    if cycle:
        first = ids[cycle[0]]
        problems.append(
            Problem(
                pointer("steps", first, "needs"),
                "dependency cycle: " + " -> ".join([*cycle, cycle[0]]),
                "a workflow is a DAG: remove one of these needs",
            )
        )
    return problems


def find_cycle(graph: Mapping[str, list[str]]) -> list[str] | None:
    """A cycle in a needs graph (step -> the steps it needs), each step followed by one it needs, starting with
    the step that comes first in the graph (the file), or None."""
    try:
        graphlib.TopologicalSorter(graph).prepare()
    except graphlib.CycleError as error:
        # graphlib lists each node before the one that needs it, the first node again at the end.
        cycle = error.args[1][:-1][::-1]
        order = {node: index for index, node in enumerate(graph)}
        first = cycle.index(min(cycle, key=order.__getitem__))
        return cycle[first:] + cycle[:first]
    return None


def ancestors(graph: Mapping[str, list[str]], step_id: str) -> set[str]:
    seen: set[str] = set()
    stack = list(graph.get(step_id, []))
    while stack:
        node = stack.pop()
        if node not in seen:
            seen.add(node)
            stack.extend(graph.get(node, []))
    return seen


# ---- plugins, actions and their inputs ---------------------------------------------------------------------


def _check_actions(steps: list[tuple[int, StepSpec]], registry: Mapping[str, Plugin]) -> list[Problem]:
    problems = []
    for index, step in steps:
        plugin = registry.get(step.plugin)
        if plugin is None:
            problems.append(
                Problem(
                    pointer("steps", index, "plugin"),
                    f"unknown plugin '{step.plugin}'",
                    "available plugins: " + ", ".join(sorted(registry)),
                )
            )
            continue
        action = plugin.actions.get(step.action)
        if action is None:
            problems.append(
                Problem(
                    pointer("steps", index, "action"),
                    f"plugin '{step.plugin}' has no action '{step.action}'",
                    f"{step.plugin} actions: " + ", ".join(sorted(plugin.actions)),
                )
            )
            continue
        problems.extend(check_input(action.input_model, step.input, pointer("steps", index, "input")))
    return problems


def check_input(model: type[BaseModel], value: dict[str, Any], base: str) -> list[Problem]:
    """Validate an action input; a value that is (or contains) a template is only known at run time."""
    try:
        model.model_validate(value)
    except ValidationError as error:
        return [
            p
            for p in pydantic_problems(error, value, base)
            if not _holds_template(value, p.pointer[len(base) :]) or p.message.startswith("missing")
        ]
    return []


def _holds_template(document: Any, json_pointer: str) -> bool:
    node = JsonPointer(json_pointer).resolve(document, None)
    return isinstance(node, str) and contains_template(node)


# ---- templates and params ----------------------------------------------------------------------------------


def template_strings(
    value: Any, path: tuple[str | int, ...] = ()
) -> Iterator[tuple[tuple[str | int, ...], str]]:
    if isinstance(value, str):
        if contains_template(value):
            yield path, value
    elif isinstance(value, dict):
        for key, item in value.items():
            yield from template_strings(item, (*path, key))
    elif isinstance(value, list):
        for position, item in enumerate(value):
            yield from template_strings(item, (*path, position))


def _check_templates(steps: list[tuple[int, StepSpec]], declared_params: set[str]) -> list[Problem]:
    graph = {s.id: list(s.needs) for _, s in steps}
    acyclic = find_cycle(graph) is None
    step_ids = set(graph)
    problems = []
    for index, step in steps:
        upstream = ancestors(graph, step.id) if acyclic else step_ids
        for path, text in template_strings(step.input):
            where = pointer("steps", index, "input", *path)
            found = analyze(text, declared_params, step_ids)
            problems.extend(Problem(where, message, hint) for message, hint in found.errors)
            for referenced in sorted(found.steps - upstream):
                problems.append(
                    Problem(
                        where,
                        f"template refers to step '{referenced}', which is not upstream of '{step.id}'",
                        f"add '{referenced}' to the needs of '{step.id}' (directly or through another step)",
                    )
                )
    return problems


def _check_params(spec: WorkflowSpec) -> list[Problem]:
    problems = []
    for name, param in spec.params.items():
        if param.default is not None and not _is_type(param.default, param):
            problems.append(
                Problem(
                    pointer("params", name, "default"),
                    f"default is not of type {param.type}",
                    "fix the default",
                )
            )
    if spec.partitions:
        param = spec.params.get(spec.partitions.param)
        if param is None or param.type != "string":
            problems.append(
                Problem(
                    pointer("partitions", "param"),
                    f"partitions.param '{spec.partitions.param}' must name a declared string param",
                    f'declare it: "params": {{"{spec.partitions.param}": {{"type": "string"}}}}',
                )
            )
    if spec.schedule:
        for name, value in spec.schedule.params.items():
            where = pointer("schedule", "params", name)
            if name not in spec.params:
                problems.append(Problem(where, f"unknown param '{name}'", "declare it under 'params'"))
            elif not (isinstance(value, str) and contains_template(value)) and not _is_type(
                value, spec.params[name]
            ):
                problems.append(Problem(where, f"value is not of type {spec.params[name].type}"))
    return problems


def check_param_values(spec: WorkflowSpec, values: Mapping[str, Any]) -> list[Problem]:
    """Run-time param values (API, CLI): declared, of the declared type, and every required one given."""
    problems = []
    for name, value in values.items():
        where = pointer("params", name)
        if name not in spec.params:
            declared = ", ".join(spec.params) or "none"
            problems.append(Problem(where, f"unknown param '{name}'", f"declared params: {declared}"))
        elif not _is_type(value, spec.params[name]):
            problems.append(Problem(where, f"'{name}' must be of type {spec.params[name].type}"))
    for name, param in spec.params.items():
        if param.default is None and name not in values:
            problems.append(
                Problem(pointer("params", name), f"param '{name}' is required (it has no default)")
            )
    return problems


def _is_type(value: Any, param: ParamSpec) -> bool:
    if isinstance(value, bool) and param.type in ("integer", "number"):
        return False
    return isinstance(value, PARAM_TYPES[param.type])
