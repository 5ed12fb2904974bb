"""Issue 11's acceptance on a real platform: bad inputs tried / refused cleanly, faults tried / survived with
nothing lost or duplicated.

    .venv/bin/python bench/trust_faults.py [--only NAME,...] [--skip-bad-inputs] [--skip-faults]
                                           [--nats-messages 10000] [--keep]

Starts the embedded stack (`wfp stack up`) and `wfp up` on it under <project>/.wfp/bench-trust-<id> (WFP_HOME),
with random operator and viewer tokens (WFP_API_TOKEN, WFP_API_READ_TOKEN); stops both at the end (SIGINT, then
`wfp stack down`) and removes that folder unless --keep. Progress goes to stderr, one JSON object to stdout.

Bad inputs: requests to the API and the Dagster UI, `wfp validate` on bad files, and hostile workflows that
validate and run. A request is refused cleanly when the answer is the documented 4xx with a JSON body holding
`error` and `message` (and `details[].pointer` for a workflow's problems; the UI answers text), and nothing was
stored: no execution created, the workflow or plugin not registered. `wfp validate` refuses cleanly with exit 2
and a `FILE:POINTER: message` line. A hostile workflow is refused cleanly when it is refused at submission with
a located 4xx, or when every run of it (run retries included) ends FAILURE with the expected error and its effect
did not happen (the SQL injection: its runs end and the canary table keeps its rows).

Faults: what was done, what was checked, timings. Survived: every run ends within a bound, the object, row or
message a run should make exists exactly once, and the platform runs the next run. The workflows of faults 1-7
are in WFP_HOME/submitted before `wfp up` starts, so every Dagster process knows them; fault 8 submits its own
through the API and checks that its failed first run is still retried. A case that leaves the platform unhealthy
is followed by `wfp stack up` and a new `wfp up`, so the next case starts on a working platform
(`platform_restarted_after`).
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import json
import os
import re
import secrets
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psutil
import psycopg2
import requests

from workflow_platform.cli.up import start_platform_process
from workflow_platform.resources.s3_client import s3_client
from workflow_platform.stack.processes import free_ports

ROOT = Path(__file__).resolve().parent.parent
OPERATOR, VIEWER = secrets.token_hex(24), secrets.token_hex(24)
FINISHED = ("SUCCESS", "FAILURE", "CANCELED")
WORKER_TAG = "wfp/run-worker"  # the warm launcher's: {"pid": <run worker>, "zygote": <its parent>, ...}
REEXECUTE = """mutation($params: ReexecutionParams!) { launchPipelineReexecution(reexecutionParams: $params) {
  __typename ... on LaunchRunSuccess { run { runId } } ... on PythonError { message } } }"""
LAUNCH = """mutation { launchRun(executionParams: {selector: {repositoryLocationName: "workflows",
  repositoryName: "__repository__", jobName: "minio_store_workflow"}}) { __typename } }"""


class CaseError(Exception):
    """A case could not go on (a run did not end, a request failed): it is reported, the bench goes on."""


class Platform:
    """`wfp stack up` and `wfp up` on it, under one WFP_HOME, with the operator's and the viewer's tokens."""

    def __init__(self, home: Path, bench_id: str) -> None:
        self.home, self.id = home, bench_id
        kept = {k: v for k, v in os.environ.items() if not k.startswith("WFP_") and k != "DAGSTER_HOME"}
        self.env = kept | {"WFP_HOME": str(home), "WFP_API_TOKEN": OPERATOR, "WFP_API_READ_TOKEN": VIEWER}
        self.process: subprocess.Popen[bytes] | None = None
        self.api = self.ui = ""
        self.http = requests.Session()

    def wfp(self, *args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
        argv = [sys.executable, "-m", "workflow_platform.cli.main", *args]
        return subprocess.run(argv, cwd=ROOT, env=self.env, capture_output=True, text=True, timeout=timeout)

    def stack_up(self) -> str:
        """Starts the stack, or the services of it that died; what `wfp stack up` said."""
        done = self.wfp("stack", "up")
        if done.returncode != 0:
            raise CaseError(f"wfp stack up exited {done.returncode}: {done.stderr[-1500:]}")
        return done.stderr.strip()[-300:]

    def manifest(self) -> dict:
        return json.loads((self.home / "stack" / "stack.json").read_text())

    def service(self, name: str) -> dict:
        return self.manifest()["services"][name]

    def up(self) -> float:
        began = time.monotonic()
        port, dagster_port = free_ports(2)
        self.process = start_platform_process(self.home, port, dagster_port, self.env)
        self.api, self.ui = f"http://127.0.0.1:{port}", f"http://127.0.0.1:{dagster_port}"
        return time.monotonic() - began

    def down(self, signum: int = signal.SIGINT) -> float:
        began = time.monotonic()
        if self.process is not None and self.process.poll() is None:
            children = psutil.Process(self.process.pid).children()
            self.process.send_signal(signum)
            try:
                self.process.wait(timeout=150)
            except subprocess.TimeoutExpired:  # its Dagster processes lead process groups of their own
                for child in children:
                    with contextlib.suppress(ProcessLookupError):
                        os.killpg(child.pid, signal.SIGKILL)
                self.process.kill()
                self.process.wait()
        return time.monotonic() - began

    def healthy(self, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with contextlib.suppress(requests.RequestException):
                if requests.get(f"{self.api}/api/health", timeout=10).status_code == 200:
                    return True
            time.sleep(1)
        return False

    # -- the API ------------------------------------------------------------------------------------------
    def call(self, method: str, path: str, token: str | None = OPERATOR, **kwargs: Any) -> requests.Response:
        headers = dict(kwargs.pop("headers", {}))
        if token:
            headers["Authorization"] = f"Bearer {token}"
        timeout = kwargs.pop("timeout", 60)
        return self.http.request(method, self.api + path, headers=headers, timeout=timeout, **kwargs)

    def launch(self, workflow: str) -> str:
        answer = self.call("POST", f"/api/workflows/{workflow}/run", json={})
        if answer.status_code == 404:  # its file did not load: say why
            said = self.wfp("validate", str(self.home / "submitted" / workflow), timeout=120).stderr
            raise CaseError(f"{workflow} is not a workflow of the platform: {said[-600:]}")
        if answer.status_code != 201:
            raise CaseError(f"launching {workflow} answered {answer.status_code}: {answer.text[:300]}")
        return answer.json()["executionId"]

    def execution(self, execution_id: str, wait: int = 0) -> dict | None:
        """The execution, or None while the API cannot say (e.g. its database is down)."""
        path, params = f"/api/executions/{execution_id}", {"wait": wait} if wait else None
        with contextlib.suppress(requests.RequestException, ValueError):
            answer = self.call("GET", path, VIEWER, params=params, timeout=wait + 30)
            return answer.json() if answer.status_code == 200 else None
        return None

    def wait(self, execution_id: str, timeout: float, until: Callable[[dict], bool] | None = None) -> dict:
        """The execution once it ended (or once `until` holds); CaseError after `timeout` seconds."""
        deadline, execution = time.monotonic() + timeout, None
        while time.monotonic() < deadline:
            wait = 0 if until else max(0, min(20, int(deadline - time.monotonic())))
            execution = self.execution(execution_id, wait) or execution
            if execution and (until(execution) if until else execution["status"] in FINISHED):
                return execution
            time.sleep(0.2)
        status = execution["status"] if execution else "unknown"
        raise CaseError(f"execution {execution_id} not done within {timeout:g} s (status {status})")

    def runs_of(self, workflow: str) -> list[dict]:
        answer = self.call("GET", "/api/executions", VIEWER, params={"workflow": workflow, "limit": 50})
        answer.raise_for_status()
        return answer.json()["items"]

    def settle(self, workflow: str, timeout: float, root: str | None = None) -> list[dict]:
        """Every run of `workflow` (with `root`: that run and its retries) once all have ended, run retries
        included: a FAILURE run Dagster will retry (tag dagster/will_retry, or not tagged yet for up to 30 s)
        waits for its retry, unless Dagster said it cannot retry it (`retry_lost`: e.g. "Could not find job"
        when the daemon's code location does not have a workflow submitted seconds before yet)."""
        deadline, pending, lost, failed_at = time.monotonic() + timeout, ["no run yet"], {}, {}
        while time.monotonic() < deadline:
            with contextlib.suppress(requests.RequestException):
                runs = [
                    run
                    for run in self.runs_of(workflow)
                    if root in (None, run["executionId"], run["tags"].get("dagster/root_run_id"))
                ]
                parents = {run["tags"].get("dagster/parent_run_id") for run in runs}
                pending = []
                for run in runs:
                    run_id, will_retry = run["executionId"], run["tags"].get("dagster/will_retry")
                    if run["status"] == "FAILURE" and will_retry is None:  # Dagster tags it just after
                        recent = time.monotonic() - failed_at.setdefault(run_id, time.monotonic()) < 30
                        will_retry = "true" if recent else None
                    awaits_retry = will_retry == "true" and run_id not in parents
                    if awaits_retry and run_id not in lost:
                        events = (self.execution(run_id) or {}).get("events", [])
                        said = [e["message"] for e in events if "unable to retry" in e["message"]]
                        lost.update({run_id: said[-1][:200]} if said else {})
                    if run_id in lost:
                        run["retry_lost"] = lost[run_id]
                    elif run["status"] not in FINISHED or awaits_retry:
                        pending.append(f"{run_id[:8]} {run['status']}")
                if runs and not pending:
                    return runs
            time.sleep(1)
        raise CaseError(f"runs of {workflow} not ended within {timeout:g} s: {', '.join(pending)}")

    def executions_total(self) -> int:
        answer = self.call("GET", "/api/stats", VIEWER)
        answer.raise_for_status()
        return sum(answer.json()["executions"].values())

    # -- what the services hold ---------------------------------------------------------------------------
    def prefix(self, workflow: str) -> str:
        return f"bench-trust/{self.id}/{workflow}/"

    def marker(self, workflow: str) -> str:
        return f"{self.id}/{workflow}"

    def objects(self, workflow: str) -> list[str]:
        env = self.manifest()["env"]
        keys = [env[f"WFP_S3_{name}"] for name in ("ENDPOINT", "ACCESS_KEY", "SECRET_KEY", "REGION")]
        client = s3_client(*keys, retries=1)
        listed = client.list_objects(env["WFP_S3_BUCKET"], prefix=self.prefix(workflow), recursive=True)
        return [item.object_name for item in listed]

    def sql(self, query: str, *params: Any) -> list[tuple]:
        dsn = self.manifest()["env"]["WFP_PG_ADMIN_DSN"]
        with contextlib.closing(psycopg2.connect(dsn, connect_timeout=10)) as connection:
            connection.autocommit = True
            with connection.cursor() as cursor:
                cursor.execute(query, params or None)
                return cursor.fetchall() if cursor.description else []

    def rows(self, workflow: str, run_ids: list[str]) -> int:
        query = "SELECT count(*) FROM orchestrator.events WHERE data->>'case' = %s AND data->>'run' = ANY(%s)"
        return self.sql(query, self.marker(workflow), run_ids)[0][0]

    def stream_messages(self, stream: str) -> int | None:
        """Messages in a JetStream stream, from NATS monitoring; None if there is no such stream."""
        monitor = self.service("nats")["ports"]["monitor"]
        url = f"http://127.0.0.1:{monitor}/jsz?accounts=true&streams=true"
        jsz = requests.get(url, timeout=10).json()
        for account in jsz.get("account_details") or []:
            for detail in account.get("stream_detail") or []:
                if detail["name"] == stream:
                    return detail["state"]["messages"]
        return None


def step(step_id: str, plugin: str, action: str, input: Any, *needs: str, **extra: Any) -> dict:
    return {"id": step_id, "plugin": plugin, "action": action, "needs": list(needs), "input": input, **extra}


def result(case: str, survived_key: str, problems: list[str], **fields: Any) -> dict:
    return {"case": case, **fields, survived_key: not problems} | ({"why_not": problems} if problems else {})


def check(problems: list[str], condition: bool, problem: str) -> None:
    if not condition:
        problems.append(problem)


# ---- bad inputs ---------------------------------------------------------------------------------------------


def workflow(name: str, change: Callable[[dict], Any] | None = None) -> dict:
    """A valid workflow (PostgreSQL -> object store -> NATS) to break one way or another."""
    count = {"sql": "SELECT CAST(:n AS int) AS n", "params": {"n": "{{ params.count }}"}}
    store = {"key": "bench-trust/bad/{{ run.id }}.json", "data": "{{ steps.count.result }}"}
    announce = {"subject": "benchtrust.bad", "message": {"n": "{{ steps.count.result.rowCount }}"}}
    document = {
        "name": name,
        "description": "a bad input of bench/trust_faults.py",
        "params": {"count": {"type": "integer", "default": 3}},
        "steps": [
            step("count", "postgres", "query", count),
            step("store", "minio", "putObject", store, "count"),
            step("announce", "nats", "publish", announce, "store"),
        ],
    }
    if change is not None:
        change(document)
    return document


def put(pointer: str, value: Any) -> Callable[[dict], None]:
    def change(document: dict) -> None:
        *parents, last = [int(k) if k.isdigit() else k for k in pointer.strip("/").split("/")]
        node = document
        for key in parents:
            node = node[key]
        node[last] = value

    return change


def key(template: str) -> Callable[[dict], None]:
    return put("steps/1/input/key", template)


# Broken workflow documents POSTed to /api/workflows: each must be a 400 with details[].pointer.
BAD_WORKFLOWS: dict[str, Callable[[dict], Any]] = {
    "missing name": lambda d: d.pop("name"),
    "missing steps": lambda d: d.pop("steps"),
    "unknown plugin": put("steps/0/plugin", "kafka"),
    "unknown action": put("steps/0/action", "dropDatabase"),
    "duplicate step ids": put("steps/1/id", "count"),
    "cycle": put("steps/0/needs", ["announce"]),
    "needs an unknown step": put("steps/1/needs", ["nowhere"]),
    "input of the wrong type": put("steps/2/input/subject", 42),
    "bad template syntax": key("out/{{ steps.count.result[ }}.json"),
    "unknown template filter": key("{{ 'now' | shout }}"),
    "template of a step not upstream": key("{{ steps.announce.result.seq }}"),
    "template of an unknown param": key("{{ params.nope }}"),
    "sandbox: ''.__class__.__mro__": key("{{ ''.__class__.__mro__[1].__subclasses__() }}"),
    "sandbox: a result's __globals__": key("{{ steps.count.result.__class__.__init__.__globals__ }}"),
    "sandbox: cycler -> os.environ": key("{{ cycler.__init__.__globals__.os.environ }}"),
    "sandbox: lipsum -> os.popen": key("{{ lipsum.__globals__['os'].popen('id').read() }}"),
    "sandbox: a function call": key("{{ range(100000000) | list }}"),
}


def bad_requests(p: Platform) -> list[dict]:
    """Each: case, status expected, body (text), and options: path, token, content_type, headers, pointer
    (details[].pointer expected), absent (a workflow, or plugin:<id>, that must not exist afterwards), ui (sent
    to the Dagster UI's /graphql), setup."""

    def doc(name: str, change: Callable[[dict], Any] | None = None) -> dict:
        return {"body": json.dumps(workflow(name, change)), "absent": name}

    def plugin(plugin_id: str, base_url: str, exposes: str) -> dict:
        registration = {"id": plugin_id, "name": plugin_id, "baseUrl": base_url, "exposes": [exposes]}
        return {"body": json.dumps(registration), "path": "/api/plugins", "absent": f"plugin:{plugin_id}", "pointer": True}  # fmt: skip

    def bad(case: str, status: int, body: str | dict, **options: Any) -> dict:
        body = {"body": body} if isinstance(body, str) else body
        return {"case": case, "status": status} | body | options

    run = "/api/workflows/minio-store-workflow/run"
    huge_int = doc("bench-bad-bigint")
    huge_int["body"] = huge_int["body"].replace(": 3", ": " + "9" * 5000)
    # fmt: off
    cases = [
        bad("malformed JSON", 400, '{"name": "bench-bad-malformed", "steps": [', absent="bench-bad-malformed"),
        bad("wrong content type", 415, "name: bench-bad-yaml\nsteps: []\n", content_type="text/yaml"),
        bad("body over 1 MiB", 413, doc("bench-bad-huge", put("description", "x" * 1_100_000))),
        bad("JSON nested 2,000 deep", 400, '{"name": "bench-bad-deep", "x": ' + "[" * 2000 + "]" * 2000 + "}"),
        bad("a 5,000-digit integer", 400, huge_int),
        bad("lone surrogate \\ud800 in description", 400, doc("bench-bad-lone", put("description", "a \ud800"))),
        bad("NaN", 400, doc("bench-bad-nan", put("params/count/default", float("nan")))),
        bad("Infinity", 400, doc("bench-bad-inf", put("params/count/default", float("inf")))),
        bad("/run with body []", 400, "[]", path=run),
        bad("/run with a param of the wrong type", 400, '{"params": {"count": "many"}}', path=run, pointer=True),
        bad("/run with an unknown param", 400, '{"params": {"nope": 1}}', path=run, pointer=True),
        bad("name of a shipped workflow", 409, doc("minio-store-workflow") | {"absent": None}),
        bad("name colliding after -/_ normalisation: minio_store_workflow", 409, doc("minio_store_workflow")),
        bad("plugin exposing ../graphql", 400, plugin("bench-sneaky", "http://93.184.215.14", "../graphql")),
        bad("plugin baseUrl on loopback (the Dagster UI)", 400, plugin("bench-grapher", p.ui, "graphql")),
        bad("plugin baseUrl on the cloud metadata address", 400, plugin("bench-meta", "http://169.254.169.254", "x")),
    ]
    # fmt: on
    for index, (name, change) in enumerate(BAD_WORKFLOWS.items()):
        cases.append(bad(name, 400, doc(f"bench-bad-{index:02d}", change), pointer=True))

    def first_use_of_the_key(platform: Platform) -> None:
        headers = {"Idempotency-Key": platform.id}
        answer = platform.call("POST", "/api/workflows", json=workflow("bench-idem"), headers=headers)
        if answer.status_code != 201:
            raise CaseError(f"the key's first request answered {answer.status_code}: {answer.text[:200]}")
        platform.settle("bench-idem", 120)

    other_body = doc("bench-idem", put("params/count/default", 4))
    other_body |= {"absent": None, "setup": first_use_of_the_key}
    writes = [("/api/workflows", doc("bench-auth")), (run, {"body": '{"params": {"count": 3}}'})]
    writes.append(("/api/plugins", plugin("bench-crm", "http://93.184.215.14/api", "lookup")))
    launch = json.dumps({"query": LAUNCH})
    # fmt: off
    cases.append(bad("Idempotency-Key reused with another body", 422, other_body, headers={"Idempotency-Key": p.id}))
    for path, body in writes:
        for who, token, status in (("no", None, 401), ("a wrong", "wrong-" + OPERATOR, 401), ("the viewer", VIEWER, 403)):
            cases.append(bad(f"POST {path} with {who} token", status, body | {"path": path, "pointer": False}, token=token))
    cases.append(bad("Dagster UI /graphql launchRun with no credentials", 401, launch, token=None, ui=True))
    cases.append(bad("Dagster UI /graphql launchRun with the viewer token", 401, launch, token=VIEWER, ui=True))
    # fmt: on
    return cases


def try_bad(p: Platform, case: dict) -> dict:
    if case.get("setup"):
        case["setup"](p)
    before = p.executions_total()
    token, path = case.get("token", OPERATOR), case.get("path", "/api/workflows")
    headers = {"Content-Type": case.get("content_type", "application/json"), **case.get("headers", {})}
    data = case["body"].encode("utf-8", "surrogatepass")
    if case.get("ui"):
        auth = ("viewer", token) if token else None
        answer = requests.post(f"{p.ui}/graphql", data=data, headers=headers, auth=auth, timeout=60)
    else:
        answer = p.call("POST", path, token=token, data=data, headers=headers)
    try:
        body = answer.json()
    except ValueError:
        body = None
    problems = [] if answer.status_code == case["status"] else [f"expected {case['status']}"]
    if not case.get("ui") and not (isinstance(body, dict) and {"error", "message"} <= body.keys()):
        problems.append("no JSON body with error and message")
    details = (body.get("details") if isinstance(body, dict) else None) or []
    if case.get("pointer") and not (details and all(detail.get("pointer") for detail in details)):
        problems.append("no details[].pointer")
    if (created := p.executions_total() - before) != 0:
        problems.append(f"{created} execution(s) created")
    if absent := case.get("absent"):
        kind, _, name = absent.rpartition(":")
        route = f"/api/plugins/{name}" if kind == "plugin" else f"/api/workflows/{name}"
        if p.call("GET", route, VIEWER).status_code != 404:
            problems.append(f"{route} exists afterwards")
    shown = f"{answer.status_code} {answer.text[:200]}"
    if isinstance(body, dict):
        shown = f"{answer.status_code} {body.get('error')}: {str(body.get('message'))[:200]}"
        shown += "".join(f" | {d.get('pointer')}: {d.get('message', '')[:120]}" for d in details[:3])
    who = {None: "no token", OPERATOR: "operator", VIEWER: "viewer"}.get(token, "wrong token")
    text = case["body"] if len(case["body"]) <= 160 else f"{case['body'][:120]}... ({len(case['body'])} B)"
    sent = f"POST {f'{p.ui}/graphql' if case.get('ui') else path} [{who}] {text}"
    return result(case["case"], "refused_cleanly", problems, sent=sent, answer=shown)


# What `wfp validate` gets: each file must give exit 2 and a `FILE:POINTER: message` line.
BAD_FILES: dict[str, Callable[[], str]] = {
    "wfp validate: malformed JSON": lambda: '{"name": "bench-bad-file", "steps": [}',
    "wfp validate: a cycle": lambda: json.dumps(
        workflow("bench-bad-file", put("steps/0/needs", ["announce"]))
    ),
    "wfp validate: unknown plugin": lambda: json.dumps(
        workflow("bench-bad-file", put("steps/0/plugin", "kafka"))
    ),
    "wfp validate: sandbox escape": lambda: json.dumps(workflow("bench-bad-file", key("{{ ''.__class__ }}"))),
    "wfp validate: 5,000-digit integer": lambda: json.dumps(workflow("x")).replace(": 3", ": " + "9" * 5000),
}


def try_bad_file(p: Platform, name: str, text: Callable[[], str]) -> dict:
    path = p.home / "bad-files" / (re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-") + ".json")
    path.parent.mkdir(exist_ok=True)
    path.write_text(text())
    done = p.wfp("validate", str(path), timeout=120)
    located = re.search(rf"^{re.escape(str(path))}:/\S*: \S.*$", done.stderr, re.MULTILINE)
    problems = [] if done.returncode == 2 else [f"exit {done.returncode}, expected 2"]
    check(problems, located is not None, "no FILE:POINTER: message line")
    check(problems, "Traceback" not in done.stderr, "a traceback")
    answer = f"exit {done.returncode}: {(located.group(0) if located else done.stderr)[:300]}"
    return result(name, "refused_cleanly", problems, sent=f"wfp validate {path.name}", answer=answer)


def hostile_workflows(p: Platform) -> list[tuple[str, list[dict], str, Callable[[], str | None]]]:
    """(case, steps, the error every run must end with ("" for the injection: its runs may succeed), what went
    wrong afterwards or None): workflows that validate and run, trying what a step must not do."""

    def query(sql: str, **params: Any) -> list[dict]:
        return [step("q", "postgres", "query", {"sql": sql, "params": params})]

    def fetch(url: str, body: Any = None) -> list[dict]:
        request = {"url": url, "method": "POST", "json": body} if body else {"url": url}
        return [step("q", "http", "request", request)]

    (data_directory,) = p.sql("SHOW data_directory")[0]
    proof = Path(data_directory) / f"bench-trust-{p.id}"  # the server's own user may write there
    canary = f"public.bench_canary_{p.id}"
    p.sql(f"CREATE TABLE {canary} (id int PRIMARY KEY, note text)")
    p.sql(f"INSERT INTO {canary} SELECT i, 'row ' || i FROM generate_series(1, 5) i")
    p.sql(f"GRANT SELECT ON {canary} TO wfp_workflows")

    def canary_intact() -> str | None:
        try:
            count = p.sql(f"SELECT count(*) FROM {canary}")[0][0]
        except psycopg2.Error as error:
            return f"the canary table is gone: {error}"
        return None if count == 5 else f"the canary table has {count} rows, not 5"

    injection = f"x' ; DELETE FROM {canary}; DROP TABLE {canary}; --"
    nats_monitor = f"http://127.0.0.1:{p.service('nats')['ports']['monitor']}/varz"
    refused, nothing = "not allowed by WFP_HTTP_ALLOW", lambda: None
    # fmt: off
    return [
        ("postgres.query COPY ... TO PROGRAM 'touch <file>'", query(f"COPY (SELECT 1) TO PROGRAM 'touch {proof}'"),
         "permission denied to COPY to or from an external program", lambda: f"{proof} exists" if proof.exists() else None),
        ("postgres.query SELECT pg_read_file('/etc/passwd')", query("SELECT pg_read_file('/etc/passwd') AS content"),
         "permission denied for function pg_read_file", nothing),
        ("postgres.query SELECT lo_import('/etc/passwd')", query("SELECT lo_import('/etc/passwd') AS oid"),
         "permission denied for function lo_import", nothing),
        ("SQL injection through :v inside a quoted literal (canary table)",
         query(f"SELECT count(*) AS n FROM {canary} WHERE note = :v OR note = ':v'", v=injection), "", canary_intact),
        ("http.request to the Dagster UI's /graphql", fetch(f"{p.ui}/graphql", {"query": LAUNCH}), refused, nothing),
        ("http.request to NATS monitoring", fetch(nats_monitor), refused, nothing),
        ("http.request to the S3 endpoint", fetch(p.manifest()["env"]["WFP_S3_ENDPOINT"] + "/"), refused, nothing),
        ("http.request to the cloud metadata address", fetch("http://169.254.169.254/latest/meta-data/"), refused, nothing),
    ]
    # fmt: on


def try_hostile(p: Platform, index: int, case: str, steps: list[dict], error: str, effect: Callable) -> dict:
    name = f"bench-hostile-{index:02d}"
    sent = f"POST /api/workflows {name}: {json.dumps(steps[0]['input'])[:200]}"
    answer = p.call("POST", "/api/workflows", json={"name": name, "steps": steps})
    problems = []
    if answer.status_code != 201:  # refused before running: clean if it is a located 4xx
        body = answer.json() if answer.headers.get("content-type", "").startswith("application/json") else {}
        if not (400 <= answer.status_code < 500 and {"error", "message"} <= body.keys()):
            problems.append(f"submission answered {answer.status_code}")
        shown = f"{answer.status_code} at submission: {answer.text[:300]}"
    else:
        shown = []
        for run in p.settle(name, 180):
            execution = p.execution(run["executionId"]) or {}
            steps_done = execution.get("steps", {}).values()
            said = " ".join(s.get("error") or "" for s in steps_done)
            results = " ".join(
                f"result {json.dumps(s['result'])[:100]}" for s in steps_done if s.get("result")
            )
            shown.append(f"{summary([run])[0]} {said[:220]}{results}")
            if error and (run["status"] != "FAILURE" or error not in said):
                problems.append(f"run {run['executionId'][:8]} {run['status']}: {said[:200]}")
        shown = f"{len(shown)} run(s), run retries included: " + "; ".join(shown)
    if (went_wrong := effect()) is not None:
        problems.append(went_wrong)
    return result(case, "refused_cleanly", problems, sent=sent, answer=shown)


# ---- faults -------------------------------------------------------------------------------------------------


def effect_workflow(
    p: Platform, name: str, sleep_s: float = 0, retry: dict | None = None, sql: str = ""
) -> dict:
    """[a PostgreSQL step: sleep_s seconds, or `sql` ->] an object (its key names the run) -> an
    orchestrator.events row naming the run: a run that ran twice or not at all shows."""
    first = {"sql": sql} if sql else {"sql": "SELECT pg_sleep(:s)", "params": {"s": sleep_s}}
    steps = [step("first", "postgres", "query", first)] if sql or sleep_s else []
    store = {"key": p.prefix(name) + "{{ run.id }}.json", "data": {"run": "{{ run.id }}"}}
    row = {"event_type": "bench_trust", "data": {"case": p.marker(name), "run": "{{ run.id }}"}}
    retried = {"retry": retry} if retry else {}
    steps.append(step("store", "minio", "putObject", store, *[s["id"] for s in steps], **retried))
    steps.append(step("log", "postgres", "insert", {"table": "orchestrator.events", "data": row}, "store"))
    return {"name": name, "steps": steps}


def fault_workflows(p: Platform, nats_messages: int) -> list[dict]:
    items = {"sql": "SELECT i FROM generate_series(1, :n) AS i", "params": {"n": nats_messages}}
    publish = {"subject": f"bt{p.id}nats.items", "messages": "{{ steps.items.result.rows }}", "idField": "i"}
    retry = {"retry": {"maxAttempts": 6, "backoff": "fixed", "delayMs": 3000}}
    nats = [step("items", "postgres", "query", items), step("publish", "nats", "publishEach", publish, "items", **retry)]  # fmt: skip
    # Re-execution: an object, a message and a row whose keys derive from the run's root, as DESIGN §7 asks.
    reexec = "bench-fault-reexec"
    row = {"idempotency_key": p.marker(reexec) + "/{{ run.root_id }}", "event_type": "bench_trust"}
    row["data"] = {"case": p.marker(reexec), "run": "{{ run.id }}"}
    upsert = {"table": "orchestrator.events", "conflict": ["idempotency_key"], "update": [], "data": row}
    store = {"key": p.prefix(reexec) + "{{ run.root_id }}.json", "data": {"run": "{{ run.id }}"}}
    announce = {"subject": f"bt{p.id}reexec.done", "message": {"run": "{{ run.id }}"}}
    # fmt: off
    return [
        effect_workflow(p, "bench-fault-worker", sleep_s=6),
        effect_workflow(p, "bench-fault-daemon", sleep_s=6),
        effect_workflow(p, "bench-fault-up", sleep_s=20),
        effect_workflow(p, "bench-fault-postgres", sleep_s=8),
        effect_workflow(p, "bench-fault-s3-before"),
        effect_workflow(p, "bench-fault-s3", sleep_s=4, retry={"maxAttempts": 6, "backoff": "fixed", "delayMs": 4000}),
        {"name": "bench-fault-nats", "steps": nats},
        {"name": reexec, "steps": [step("store", "minio", "putObject", store),
                                   step("announce", "nats", "publish", announce, "store"),
                                   step("log", "postgres", "upsert", upsert, "announce")]},
        effect_workflow(p, "bench-fault-next"),
    ]
    # fmt: on


def effects(p: Platform, name: str, runs: list[dict]) -> dict:
    """The objects and rows that these runs of workflow `name` made (keys and rows name their run)."""
    run_ids = [run["executionId"] for run in runs]
    objects = [key for key in p.objects(name) if any(run_id in key for run_id in run_ids)]
    return {"objects": len(objects), "rows": p.rows(name, run_ids)}


def once_each(found: dict, succeeded: bool) -> list[str]:
    """Nothing lost, nothing duplicated: one object and one row if a run succeeded, none otherwise."""
    expected = 1 if succeeded else 0
    return [f"{n} {what}, expected {expected}" for what, n in found.items() if n != expected]


def started(execution: dict) -> bool:
    return execution["status"] == "STARTED" and WORKER_TAG in execution["tags"]


def summary(runs: list[dict]) -> list[str]:
    """Oldest first: "<id> <status>", and why Dagster did not retry a run it said it would."""
    lost = {run["executionId"]: f" (retry lost: {run['retry_lost']})" for run in runs if "retry_lost" in run}
    return [f"{run['executionId'][:8]} {run['status']}{lost.get(run['executionId'], '')}" for run in reversed(runs)]  # fmt: skip


def launch_started(p: Platform, name: str) -> tuple[str, dict]:
    """Launch a run of `name`; its id and the execution once its worker runs it."""
    execution_id = p.launch(name)
    return execution_id, p.wait(execution_id, 60, until=started)


def next_run(p: Platform) -> list[str]:
    """The platform still runs a run after the fault."""
    status = p.wait(p.launch("bench-fault-next"), 120)["status"]
    return [] if status == "SUCCESS" else [f"the next run ended {status}"]


def fault_worker_kill(p: Platform) -> dict:
    name = "bench-fault-worker"
    execution_id, execution = launch_started(p, name)
    worker = json.loads(execution["tags"][WORKER_TAG])
    os.kill(worker["pid"], signal.SIGKILL)
    killed = time.monotonic()
    failed = p.wait(execution_id, 60)
    failed_s = time.monotonic() - killed
    runs = p.settle(name, 180, root=execution_id)
    found = effects(p, name, runs)
    problems = once_each(found, any(run["status"] == "SUCCESS" for run in runs)) + next_run(p)
    check(problems, failed["status"] == "FAILURE" and failed_s < 30, f"{failed['status']}, {failed_s:.0f} s")
    return {
        "done": f"SIGKILL to the run worker (pid {worker['pid']}, from the run's {WORKER_TAG} tag) in a 6 s step",
        "checked": "the run ends FAILURE within 30 s; its run retry (dagster.yaml run_retries) ends; one object "
        "and one row if the retry succeeded, none otherwise; the next run succeeds",
        "problems": problems,
        "timings": {"killed_to_failure_s": round(failed_s, 2)},
        "details": {"runs": summary(runs), **found},
    }


def dagster_process(p: Platform, name: str) -> psutil.Process | None:
    assert p.process is not None
    for child in psutil.Process(p.process.pid).children():
        with contextlib.suppress(psutil.Error):
            if name in child.cmdline()[1:3]:
                return child
    return None


def fault_daemon_kill(p: Platform) -> dict:
    name = "bench-fault-daemon"
    execution_id, _ = launch_started(p, name)
    if (daemon := dagster_process(p, "daemon")) is None:
        raise CaseError("no Dagster daemon among wfp up's children")
    daemon.send_signal(signal.SIGKILL)
    killed, restarted = time.monotonic(), None
    while time.monotonic() - killed < 30 and restarted is None:
        time.sleep(0.5)
        new = dagster_process(p, "daemon")
        restarted = time.monotonic() - killed if new is not None and new.pid != daemon.pid else None
    finished = p.wait(execution_id, 120)
    ended_s = time.monotonic() - killed
    runs = p.settle(name, 120, root=execution_id)
    found = effects(p, name, runs)
    problems = once_each(found, True) + next_run(p)
    check(problems, restarted is not None, "no new daemon within 30 s")
    check(problems, finished["status"] == "SUCCESS" and len(runs) == 1, f"runs: {summary(runs)}")
    return {
        "done": f"SIGKILL to the Dagster daemon (pid {daemon.pid}) while its worker runs a 6 s step",
        "checked": "wfp up starts a daemon again; the run ends SUCCESS; one object, one row; the next run succeeds",
        "problems": problems,
        "timings": {"daemon_restarted_s": restarted and round(restarted, 2), "run_end_s": round(ended_s, 2)},
        "details": {"runs": summary(runs), **found},
    }


def fault_up_sigterm(p: Platform) -> dict:
    name = "bench-fault-up"
    execution_id, _ = launch_started(p, name)
    assert p.process is not None
    stop_s = p.down(signal.SIGTERM)
    exit_code, up_s = p.process.returncode, p.up()
    restarted = time.monotonic()
    interrupted = p.wait(execution_id, 60)
    ended_s = time.monotonic() - restarted
    runs = p.settle(name, 240, root=execution_id)
    found = effects(p, name, runs)
    retries = [run["status"] for run in runs if run["tags"].get("dagster/parent_run_id") == execution_id]
    problems = once_each(found, True)
    check(problems, interrupted["status"] == "FAILURE" and ended_s < 60, f"run {interrupted['status']}")
    check(problems, retries == ["SUCCESS"], f"its retries: {retries}")
    return {
        "done": "SIGTERM to wfp up during a 20 s step, then wfp up started again",
        "checked": "the interrupted run ends FAILURE within 60 s of the restart; run_retries retries it "
        "(dagster.yaml); one object, one row",
        "problems": problems,
        "timings": {
            "stop_s": round(stop_s, 1),
            "up_s": round(up_s, 1),
            "run_end_after_up_s": round(ended_s, 2),
        },
        "details": {"wfp_up_exit_code": exit_code, "runs": summary(runs), **found},
    }


def serving(data_dir: str) -> bool:
    """Whether a PostgreSQL process (each works in its data dir) still runs on `data_dir`."""
    for process in psutil.process_iter():
        with contextlib.suppress(psutil.Error):
            if process.cwd() == data_dir and process.status() != psutil.STATUS_ZOMBIE:
                return True
    return False


def fault_postgres_kill(p: Platform) -> dict:
    name = "bench-fault-postgres"
    execution_id, _ = launch_started(p, name)
    postgres = p.service("postgres")
    os.kill(postgres["process"]["pid"], signal.SIGKILL)
    killed = time.monotonic()
    while time.monotonic() - killed < 10 and serving(postgres["data_dir"]):
        time.sleep(0.05)  # backends serve their connections until they notice that the postmaster is gone
    probes = [
        ("GET", "/api/executions", None),
        ("GET", f"/api/executions/{execution_id}", None),
        ("GET", "/api/stats", None),
        ("POST", "/api/workflows/bench-fault-next/run", {}),
        ("POST", "/api/workflows", workflow("bench-fault-postgres-down")),
    ]
    while_down = {}
    for method, path, body in probes:
        try:
            while_down[f"{method} {path}"] = p.call(method, path, json=body, timeout=90).status_code
        except requests.RequestException as error:
            while_down[f"{method} {path}"] = f"{type(error).__name__}: {str(error)[-120:]}"
    said = p.stack_up()
    restarted, recovered = time.monotonic(), None
    while recovered is None and time.monotonic() - restarted < 60:
        with contextlib.suppress(requests.RequestException):
            if p.call("GET", "/api/executions", VIEWER, timeout=30).ok:
                recovered = time.monotonic() - restarted
        time.sleep(1)
    problems = [f"{probe} answered {code}" for probe, code in while_down.items() if code != 503]
    details = {"answers_while_down": while_down, "stack_up": said}
    details["port_before_after"] = [postgres["ports"]["tcp"], p.service("postgres")["ports"]["tcp"]]
    if recovered is None:
        problems.append("the API did not answer 2xx within 60 s of the restart")
    else:
        details["run_in_flight"] = p.wait(execution_id, 180)["status"]
        runs = p.settle(name, 180, root=execution_id)
        found = effects(p, name, runs)
        problems += [f"{n} {what}" for what, n in found.items() if n > 1] + next_run(p)
        details |= {"runs": summary(runs), **found}
    return {
        "done": f"SIGKILL to the PostgreSQL postmaster (pid {postgres['process']['pid']}) during an 8 s step; "
        "requests while it is down; `wfp stack up` on the same WFP_HOME",
        "checked": "503 (never 500) while down; 2xx within 60 s of the restart; the run in flight ends (and its "
        "retry); no object or row twice; the next run succeeds",
        "problems": problems,
        "timings": {
            "down_s": round(restarted - killed, 1),
            "api_2xx_after_restart_s": recovered and round(recovered, 2),
        },
        "details": details,
    }


def fault_s3_kill(p: Platform) -> dict:
    stored = p.wait(p.launch("bench-fault-s3-before"), 120)["status"]
    before = p.objects("bench-fault-s3-before")
    name = "bench-fault-s3"
    execution_id, _ = launch_started(p, name)
    s3 = p.service("s3")
    os.kill(s3["process"]["pid"], signal.SIGKILL)
    killed = time.monotonic()
    said = p.stack_up()
    restart_s = time.monotonic() - killed
    kept = p.objects("bench-fault-s3-before")
    finished = p.wait(execution_id, 180)["status"]
    runs = p.settle(name, 180, root=execution_id)
    found = effects(p, name, runs)
    problems = once_each(found, True)
    check(problems, stored == "SUCCESS" and len(before) == 1, f"before: {stored}, {len(before)} object(s)")
    check(problems, kept == before, f"{len(kept)} of the {len(before)} object(s) stored before are left")
    check(problems, finished == "SUCCESS", f"the run in flight ended {finished}")
    return {
        "done": f"SIGKILL to the S3 server (pid {s3['process']['pid']}) while a run sleeps before its putObject "
        "(retry 6 x 4 s); `wfp stack up` on the same WFP_HOME",
        "checked": "the object stored before the kill is still there; the run in flight ends SUCCESS with one "
        "object and one row",
        "problems": problems,
        "timings": {"restart_s": round(restart_s, 1)},
        "details": {
            "stack_up": said,
            "endpoint_before_after": [
                s3["env"]["WFP_S3_ENDPOINT"],
                p.service("s3")["env"]["WFP_S3_ENDPOINT"],
            ],
            "runs": summary(runs),
            **found,
        },
    }


def fault_nats_kill(p: Platform, messages: int) -> dict:
    stream = f"BT{p.id.upper()}NATS"  # the stream the first publish creates for bt<id>nats.items
    execution_id = p.launch("bench-fault-nats")
    nats = p.service("nats")
    deadline, stored = time.monotonic() + 60, None
    while time.monotonic() < deadline and not stored:  # until the publishing has begun
        with contextlib.suppress(requests.RequestException):
            stored = p.stream_messages(stream)
        time.sleep(0.02)
    os.kill(nats["process"]["pid"], signal.SIGKILL)
    killed = time.monotonic()
    said = p.stack_up()
    restart_s = time.monotonic() - killed
    execution = p.wait(execution_id, 240)
    runs = p.settle("bench-fault-nats", 120, root=execution_id)
    count = p.stream_messages(stream)
    problems = [] if execution["status"] == "SUCCESS" else [f"the run ended {execution['status']}"]
    check(problems, count == messages, f"the stream holds {count} messages")
    return {
        "done": f"SIGKILL to nats-server (pid {nats['process']['pid']}) once {stored} of {messages} messages of "
        "a publishEach were stored; `wfp stack up` on the same WFP_HOME",
        "checked": f"the run ends SUCCESS (the step retried); the stream holds exactly {messages} messages, one per "
        "item (the retry's duplicates dropped by Nats-Msg-Id)",
        "problems": problems,
        "timings": {"restart_s": round(restart_s, 1), "killed_to_end_s": round(time.monotonic() - killed, 1)},
        "details": {
            "stream_messages": count,
            "publish_attempts": execution["steps"].get("publish", {}).get("attempts"),
            "stack_up": said,
            "ports_before_after": [nats["ports"], p.service("nats")["ports"]],
            "runs": summary(runs),
        },
    }


def fault_reexecute_all(p: Platform) -> dict:
    name = "bench-fault-reexec"
    first = p.wait(p.launch(name), 120)
    variables = {"params": {"parentRunId": first["executionId"], "strategy": "ALL_STEPS"}}
    answer = requests.post(
        f"{p.ui}/graphql",
        json={"query": REEXECUTE, "variables": variables},
        headers={"Authorization": f"Bearer {OPERATOR}"},
        timeout=60,
    )
    launched = answer.json()["data"]["launchPipelineReexecution"] if answer.ok else {"HTTP": answer.status_code}  # fmt: skip
    if launched.get("__typename") != "LaunchRunSuccess":
        raise CaseError(f"launchPipelineReexecution answered {launched}")
    again = p.wait(launched["run"]["runId"], 120)
    found = effects(p, name, [first, again]) | {"messages": p.stream_messages(f"BT{p.id.upper()}REEXEC")}
    problems = once_each(found, True)
    check(problems, first["status"] == again["status"] == "SUCCESS", f"{first['status']}, {again['status']}")
    return {
        "done": "GraphQL launchPipelineReexecution (ALL_STEPS) of a finished run on the UI's /graphql, the "
        "operator token as Bearer, as the UI's Re-execute all",
        "checked": "both runs SUCCESS; one object (key from run.root_id), one NATS message (default Nats-Msg-Id), "
        "one row (upsert on an idempotency_key from run.root_id)",
        "problems": problems,
        "timings": {},
        "details": {"runs": [first["status"], again["status"]], **found},
    }


def fault_fresh_retry(p: Platform) -> dict:
    flag = f"public.bench_flag_{p.id}"
    p.sql(f"CREATE TABLE {flag} (ready int)")
    p.sql(f"GRANT SELECT ON {flag} TO wfp_workflows")
    name = f"bench-fault-fresh-{p.id}"
    document = effect_workflow(p, name, sql=f"SELECT 1 / count(*) AS ready FROM {flag}")  # 1/0 until a row
    submitted = time.monotonic()
    answer = p.call("POST", "/api/workflows", json=document)
    if answer.status_code != 201:
        raise CaseError(f"submitting {name} answered {answer.status_code}: {answer.text[:300]}")
    execution_id = answer.json()["executionId"]
    failed = p.wait(execution_id, 60)
    failed_s = time.monotonic() - submitted
    p.sql(f"INSERT INTO {flag} VALUES (1)")  # the transient failure is over: the retry succeeds
    runs = p.settle(name, 120, root=execution_id)
    found = effects(p, name, runs)
    problems = once_each(found, True)
    check(problems, failed["status"] == "FAILURE", f"the first run ended {failed['status']}")
    check(problems, not any("retry_lost" in run for run in runs), "Dagster did not retry it")
    return {
        "done": "a workflow submitted through the API whose first run fails at once (a step divides by zero "
        "until the bench inserts a row)",
        "checked": "the run is retried per run_retries (dagster.yaml) and the retry ends SUCCESS; one object, one row",
        "problems": problems,
        "timings": {"submitted_to_failure_s": round(failed_s, 2)},
        "details": {"runs": summary(runs), **found},
    }


FAULTS: dict[str, Callable[..., dict]] = {
    "1 run worker SIGKILL mid-run": fault_worker_kill,
    "2 Dagster daemon SIGKILL mid-run": fault_daemon_kill,
    "3 wfp up SIGTERM mid-run, started again": fault_up_sigterm,
    "4 PostgreSQL SIGKILL and restart": fault_postgres_kill,
    "5 S3 server SIGKILL and restart": fault_s3_kill,
    "6 NATS SIGKILL mid-publish and restart": fault_nats_kill,
    "7 Re-execute all of a finished run": fault_reexecute_all,
    "8 run retry of a workflow submitted seconds before": fault_fresh_retry,
}


# ---- the bench ----------------------------------------------------------------------------------------------


def attempt(case: str, key: str, action: Callable[[], dict]) -> dict:
    """The case's result with its duration (a case that cannot finish is reported, the next one runs);
    progress on stderr."""
    began = time.monotonic()
    try:
        outcome = action()
        if "problems" in outcome:  # a fault: survived when nothing went wrong
            outcome = result(case, key, outcome.pop("problems"), **outcome)
    except Exception as error:
        outcome = {"case": case, key: False, "error": f"{type(error).__name__}: {error}"[:1500]}
    seconds = round(time.monotonic() - began, 1)
    print(f"{key}={outcome[key]} {seconds} s: {case}", file=sys.stderr, flush=True)
    return outcome | {"seconds": seconds}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", default="", help="comma-separated parts of case names to run")
    parser.add_argument("--skip-bad-inputs", action="store_true")
    parser.add_argument("--skip-faults", action="store_true")
    parser.add_argument("--nats-messages", type=int, default=10_000)
    parser.add_argument("--keep", action="store_true", help="keep the state folder (logs, data) afterwards")
    args = parser.parse_args()
    only = [part.strip().lower() for part in args.only.split(",") if part.strip()]

    def chosen(name: str) -> bool:
        return not only or any(part in name.lower() for part in only)

    # A shell starts background jobs with SIGINT ignored, and children inherit that: `wfp up` would ignore the
    # SIGINT that stops it. A handler here gives every child the default again.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    began, load_at_start, up_s = time.monotonic(), os.getloadavg(), None
    bench_id = secrets.token_hex(3)
    home = Path(os.environ.get("WFP_HOME") or ROOT / ".wfp") / f"bench-trust-{bench_id}"
    p = Platform(home, bench_id)
    bad: list[dict] = []
    faults: list[dict] = []
    try:
        p.stack_up()
        for document in fault_workflows(p, args.nats_messages):
            (folder := home / "submitted" / document["name"]).mkdir(parents=True)
            (folder / "workflow.json").write_text(json.dumps(document, indent=1))
        up_s = p.up()
        if not args.skip_bad_inputs:
            for case in bad_requests(p):
                if chosen(case["case"]):
                    bad.append(attempt(case["case"], "refused_cleanly", lambda c=case: try_bad(p, c)))
            for name, text in BAD_FILES.items():
                if chosen(name):
                    bad.append(attempt(name, "refused_cleanly", lambda n=name, t=text: try_bad_file(p, n, t)))
            for index, (name, *hostile) in enumerate(hostile_workflows(p)):
                if chosen(name):
                    run_it = functools.partial(try_hostile, p, index, name, *hostile)
                    bad.append(attempt(name, "refused_cleanly", run_it))
        for name, fault in FAULTS.items():
            if args.skip_faults or not chosen(name):
                continue
            extra = (args.nats_messages,) if fault is fault_nats_kill else ()
            faults.append(attempt(name, "survived", lambda f=fault, e=extra: f(p, *e)))
            if not p.healthy(20):  # the next case starts on a working platform
                p.stack_up()
                p.down()
                p.up()
                faults[-1]["platform_restarted_after"] = True
    finally:
        p.down()
        stopped = p.wfp("stack", "down", timeout=180)
        if not args.keep and stopped.returncode == 0:
            shutil.rmtree(home, ignore_errors=True)
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True)
    report = {
        "bad_inputs": {
            "tried": len(bad),
            "refused_cleanly": sum(c["refused_cleanly"] is True for c in bad),
            "cases": bad,
        },
        "faults": {
            "tried": len(faults),
            "survived": sum(c["survived"] is True for c in faults),
            "cases": faults,
        },
        "load_average": [round(x, 2) for x in os.getloadavg()],
        "load_average_at_start": [round(x, 2) for x in load_at_start],
        "seconds": round(time.monotonic() - began, 1),
        "wfp_up_start_s": up_s and round(up_s, 1),
        "commit": commit.stdout.strip(),
        "cpus": os.cpu_count(),
        "state": str(home) if args.keep else None,
    }
    print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
