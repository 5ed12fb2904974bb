"""The template language of workflow inputs (DESIGN §4), on Jinja2's immutable sandbox.

`{{ steps.<id>.result... }}`, `{{ params.x }}`, `{{ run.id }}`, `{{ run.root_id }}`, `{{ workflow.name }}`,
`{{ trigger.* }}`, with the filters `date('YYYY-MM-DD/HH')` (moment-style tokens, as in the original files), `json`
and Jinja's own. A string that is exactly one template keeps the value's type; a template inside other text is
interpolated as text.
`analyze` checks a template statically so a bad reference is a validation error before any run.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from functools import lru_cache
from typing import Any

import pendulum
from jinja2 import StrictUndefined, TemplateSyntaxError, Undefined, nodes, pass_context
from jinja2.runtime import Context
from jinja2.sandbox import ImmutableSandboxedEnvironment
from pendulum.formatting.formatter import Formatter
from pendulum.locales.locale import Locale

ROOTS = ("steps", "params", "run", "workflow", "trigger")
# run.id is the Dagster run; run.root_id the first run it re-executes (itself if none): the one for idempotent keys.
RUN_FIELDS = ("id", "root_id", "started_at", "job_name")
# The moment 'now' stands for in the date filter, given in the render context under this name (not a template
# variable: templates cannot name it).
NOW = "now"
WORKFLOW_FIELDS = ("name", "description")

_TEMPLATE = re.compile(r"{{(.*?)}}", re.DOTALL)
_WHOLE = re.compile(r"^\s*{{(.*?)}}\s*$", re.DOTALL)
# `steps.fetch-orders.result` is not a Jinja expression (the id has dashes): rewrite it to steps["fetch-orders"].
_STEP_REF = re.compile(r"(?<![\w\"'.\]])steps\.([A-Za-z0-9_-]+)")


class TemplateError(Exception):
    """A template failed to render at run time (missing key, bad value ...)."""


def contains_template(value: str) -> bool:
    return "{{" in value or "{%" in value


def _rewrite(expression: str) -> str:
    return _STEP_REF.sub(lambda m: f'steps["{m.group(1)}"]', expression)


# ---- filters -------------------------------------------------------------------------------------------------


class _MomentFormatter(Formatter):
    """pendulum's formatter (moment.js tokens), plus the lowercase meridiem 'a' that pendulum 3 leaves as is."""

    def _format_token(self, dt: pendulum.DateTime, token: str, locale: Locale) -> str:
        if token == "a":
            return "am" if dt.hour < 12 else "pm"
        return super()._format_token(dt, token, locale)


_FORMATTER = _MomentFormatter()


def format_moment(moment: datetime, pattern: str) -> str:
    """Format a datetime with moment.js tokens (YYYY-MM-DD HH:mm:ss ...), as the original workflow files use."""
    return _FORMATTER.format(pendulum.instance(moment), pattern, locale="en")


def to_datetime(value: Any, now: datetime | None = None) -> datetime:
    """'now' (the start of the run's root, so retries and re-executions produce the same keys), ISO text, epoch
    seconds, or a date."""
    if isinstance(value, str) and value.strip().lower() in ("now", "today"):
        moment = now or datetime.now(UTC)
    elif isinstance(value, datetime):
        moment = value
    elif isinstance(value, date):
        moment = datetime(value.year, value.month, value.day)
    elif isinstance(value, int | float) and not isinstance(value, bool):
        moment = datetime.fromtimestamp(value, UTC)
    elif isinstance(value, str):
        try:
            moment = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
        except ValueError:
            raise TemplateError(f"date: cannot read '{value}' as a date (use 'now' or ISO 8601)") from None
    else:
        raise TemplateError(f"date: cannot read a {type(value).__name__} as a date")
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


@pass_context
def _date_filter(context: Context, value: Any, pattern: str = "YYYY-MM-DDTHH:mm:ssZ") -> str:
    started = context.get(NOW)
    now = to_datetime(started) if started else None
    return format_moment(to_datetime(value, now), pattern)


def _json_filter(value: Any, indent: int | None = None) -> str:
    return json.dumps(value, indent=indent, default=str, ensure_ascii=False)


def _finalize(value: Any) -> Any:
    # Interpolated objects and lists become JSON text, not Python reprs.
    return json.dumps(value, default=str, ensure_ascii=False) if isinstance(value, dict | list) else value


@lru_cache(maxsize=1)
def environment() -> ImmutableSandboxedEnvironment:
    env = ImmutableSandboxedEnvironment(undefined=StrictUndefined, finalize=_finalize, autoescape=False)
    env.filters["date"] = _date_filter
    env.filters["json"] = _json_filter
    return env


# ---- rendering -----------------------------------------------------------------------------------------------


def render_string(text: str, context: Mapping[str, Any]) -> Any:
    env = environment()
    whole = _WHOLE.match(text)
    try:
        if whole and "{{" not in whole.group(1):
            value = env.compile_expression(_rewrite(whole.group(1)), undefined_to_none=False)(**context)
            if isinstance(value, Undefined):
                str(value)  # raises the undefined's own error (missing key, or the sandbox's SecurityError)
            return value
        return env.from_string(_TEMPLATE.sub(lambda m: "{{" + _rewrite(m.group(1)) + "}}", text)).render(
            **context
        )
    except TemplateError:
        raise
    except Exception as error:  # jinja's UndefinedError, SecurityError, TypeError from a filter ...
        raise TemplateError(f"{text.strip()}: {error}") from None


def render(value: Any, context: Mapping[str, Any]) -> Any:
    """Render every template inside a JSON value (dicts, lists, strings), keeping types of whole-value templates."""
    if isinstance(value, str):
        return render_string(value, context) if contains_template(value) else value
    if isinstance(value, dict):
        return {key: render(item, context) for key, item in value.items()}
    if isinstance(value, list):
        return [render(item, context) for item in value]
    return value


# ---- static analysis -----------------------------------------------------------------------------------------


@dataclass
class TemplateAnalysis:
    steps: set[str] = field(default_factory=set)  # step ids referenced
    params: set[str] = field(default_factory=set)
    roots: set[str] = field(default_factory=set)  # the variables read: steps, params, run, trigger, workflow
    run_fields: set[str] = field(default_factory=set)  # run.id, run.started_at, ...
    filters: set[str] = field(default_factory=set)
    errors: list[tuple[str, str]] = field(default_factory=list)  # (message, hint)

    def error(self, message: str, hint: str = "") -> None:
        self.errors.append((message, hint))


def _path(node: nodes.Node) -> tuple[str | None, list[Any]]:
    """For `a.b["c"][0]` return ('a', ['b', 'c', 0]); a non-constant subscript ends the path."""
    keys: list[Any] = []
    while isinstance(node, nodes.Getattr | nodes.Getitem):
        if isinstance(node, nodes.Getattr):
            keys.append(node.attr)
        elif isinstance(node.arg, nodes.Const):
            keys.append(node.arg.value)
        else:
            keys.clear()
        node = node.node
    return (node.name if isinstance(node, nodes.Name) else None), list(reversed(keys))


def analyze(text: str, declared_params: set[str], step_ids: set[str]) -> TemplateAnalysis:
    """Statically check one input string: syntax, roots, filters, internals, calls; collect step/param refs."""
    result = TemplateAnalysis()
    if "{%" in text or "{#" in text:
        result.error("only {{ expression }} templates are allowed", "remove the {% %} / {# #} block")
        return result
    env = environment()
    for match in _TEMPLATE.finditer(text):
        expression = match.group(1)
        try:
            tree = env.parse("{{" + _rewrite(expression) + "}}")
        except TemplateSyntaxError as error:
            result.error(f"template syntax error in '{{{{{expression}}}}}': {error.message}")
            continue
        _check_tree(tree, result, declared_params, step_ids)
    if text.count("{{") != len(_TEMPLATE.findall(text)):
        result.error("unclosed '{{' in template", "close it with '}}'")
    return result


def _walk(tree: nodes.Node) -> Iterator[nodes.Node]:
    yield tree
    for child in tree.iter_child_nodes():
        yield from _walk(child)


def _check_tree(tree: nodes.Node, result: TemplateAnalysis, params: set[str], step_ids: set[str]) -> None:
    env = environment()
    all_nodes = list(_walk(tree))
    # Only the outermost node of an a.b[c].d chain carries the whole path.
    inner = {id(n.node) for n in all_nodes if isinstance(n, nodes.Getattr | nodes.Getitem)}
    for node in all_nodes:
        if isinstance(node, nodes.Call):
            result.error("function calls are not allowed in templates", "use a filter, e.g. {{ x | json }}")
        elif isinstance(node, nodes.Filter) and node.name not in env.filters:
            result.error(
                f"unknown filter '{node.name}'",
                "available filters: " + ", ".join(sorted(env.filters)),
            )
        elif isinstance(node, nodes.Test) and node.name not in env.tests:
            result.error(f"unknown test '{node.name}'")
        elif isinstance(node, nodes.Getattr) and node.attr.startswith("_"):
            result.error(f"'{node.attr}': access to Python internals is not allowed in templates")
        elif (
            isinstance(node, nodes.Getitem)
            and isinstance(node.arg, nodes.Const)
            and isinstance(node.arg.value, str)
            and node.arg.value.startswith("_")
        ):
            result.error(f"'{node.arg.value}': access to Python internals is not allowed in templates")
        elif isinstance(node, nodes.Name) and node.ctx == "load" and node.name not in ROOTS:
            result.error(f"unknown variable '{node.name}'", "templates can use " + ", ".join(ROOTS))
        if isinstance(node, nodes.Name) and node.ctx == "load":
            result.roots.add(node.name)
        elif isinstance(node, nodes.Filter):
            result.filters.add(node.name)
        if isinstance(node, nodes.Getattr | nodes.Getitem) and id(node) not in inner:
            _check_reference(node, result, params, step_ids)


def _check_reference(
    node: nodes.Node, result: TemplateAnalysis, params: set[str], step_ids: set[str]
) -> None:
    """Check the first level below a root: which step, which param, which run/workflow field."""
    root, keys = _path(node)
    if not keys:
        return
    first = keys[0]
    if root == "steps":
        if first not in step_ids:
            result.error(
                f"template refers to unknown step '{first}'", "known steps: " + ", ".join(sorted(step_ids))
            )
            return
        result.steps.add(first)
        if len(keys) < 2 or keys[1] != "result":
            result.error(f"use 'steps.{first}.result' to read a step's result")
    elif root == "params":
        if first not in params:
            declared = ", ".join(sorted(params)) or "none"
            result.error(f"unknown param '{first}'", f"declare it under 'params' (declared: {declared})")
        result.params.add(first)
    elif root == "run":
        result.run_fields.add(first)
        if first not in RUN_FIELDS:
            result.error(f"unknown run field '{first}'", "available: " + ", ".join(RUN_FIELDS))
    elif root == "workflow" and first not in WORKFLOW_FIELDS:
        result.error(f"unknown workflow field '{first}'", "available: " + ", ".join(WORKFLOW_FIELDS))
