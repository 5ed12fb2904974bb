"""A workflow file that fails validation still shows in the Dagster UI, where users look for it.

Each invalid file becomes a placeholder job named after its folder (the name its workflow has when the folder is
named after it, so the job's earlier runs stay beside it). The job's description lists every problem (file, JSON
pointer, message, hint), its tags say it is invalid, and launching it fails at once with the same list. It has no
schedule or sensor: nothing runs it by itself.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path

import dagster as dg

from workflow_platform.language.problems import Problem
from workflow_platform.language.spec import dagster_name

INVALID_TAG = "wfp/invalid"


def problems_by_file(problems: Iterable[Problem]) -> dict[str, list[Problem]]:
    grouped: dict[str, list[Problem]] = {}
    for problem in problems:
        grouped.setdefault(problem.file, []).append(problem)
    return grouped


def describe(file: str, problems: Sequence[Problem]) -> str:
    """Markdown: what is wrong, where, and what to do."""
    lines = [f"**Invalid workflow: not loaded.** `{file}` has {len(problems)} problem(s):", ""]
    for problem in problems:
        hint = f" (hint: {problem.hint})" if problem.hint else ""
        lines.append(f"- `{problem.pointer or '/'}`: {problem.message}{hint}")
    lines += ["", "Fix the file; the job comes back when the code location reloads."]
    return "\n".join(lines)


def invalid_workflow_jobs(problems: Iterable[Problem], taken: Iterable[str]) -> list[dg.JobDefinition]:
    """One placeholder job per file with problems; `taken`: the names of the jobs that loaded."""
    used = set(taken)
    jobs = []
    for file, found in problems_by_file(problems).items():
        base = dagster_name(Path(file).parent.name or "workflow") if file else "workflow"
        name = base if base not in used else f"{base}__invalid"
        suffix = 2
        while name in used:
            name, suffix = f"{base}__invalid_{suffix}", suffix + 1
        used.add(name)
        jobs.append(_placeholder(name, file, found))
    return jobs


def _placeholder(name: str, file: str, problems: Sequence[Problem]) -> dg.JobDefinition:
    description = describe(file, problems)
    listing = "\n".join(problem.render() for problem in problems)

    summary = f"invalid workflow, not loaded: {len(problems)} problem(s), listed in the job's description"

    @dg.op(name=f"{name}__invalid_workflow", description=summary)
    def invalid_workflow() -> None:
        raise dg.Failure(
            description=f"workflow {file} is invalid and was not loaded:\n{listing}",
            metadata={"file": file, "problems": dg.MetadataValue.md(description)},
            allow_retries=False,
        )

    @dg.job(name=name, description=description, tags={INVALID_TAG: "true"})
    def placeholder() -> None:
        invalid_workflow()

    return placeholder
