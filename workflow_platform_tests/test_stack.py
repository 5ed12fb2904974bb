"""The embedded stack against real servers: what a user of WFP_* sees, and the stack's own lifecycle."""

from __future__ import annotations

import asyncio
import io
import json
import os
import signal
import urllib.request
from collections.abc import Iterator
from contextlib import closing
from pathlib import Path
from urllib.parse import urlparse

import nats
import psutil
import psycopg2
import pytest
from minio import Minio

from workflow_platform.fraud import NO_MODEL
from workflow_platform.resources.fraud_stream_control import Status
from workflow_platform.stack import EmbeddedStack, ServiceStartError
from workflow_platform.stack.processes import free_ports, port_open, stop_process, wait_gone
from workflow_platform_tests.conftest import read_json_object

THREE = ("postgres", "nats", "s3")
ORCHESTRATOR_TABLES = {"events", "transactions", "customer_profiles", "merchants"}


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedStack]:
    with EmbeddedStack(tmp_path_factory.mktemp("stack"), services=THREE) as running:
        yield running


def pg_rows(dsn: str, sql: str, params: tuple[object, ...] = ()) -> list[tuple[object, ...]]:
    with closing(psycopg2.connect(dsn)) as conn, conn, conn.cursor() as cur:
        cur.execute(sql, params)
        return cur.fetchall() if cur.description else []


def minio_client(env: dict[str, str]) -> Minio:
    return Minio(
        urlparse(env["WFP_S3_ENDPOINT"]).netloc,
        access_key=env["WFP_S3_ACCESS_KEY"],
        secret_key=env["WFP_S3_SECRET_KEY"],
        region=env["WFP_S3_REGION"],
        secure=False,
    )


def all_ports(stack: EmbeddedStack) -> list[int]:
    return [port for handle in stack.handles.values() for port in handle.ports.values()]


def live(proc: psutil.Process) -> bool:
    """Running: a zombie counts only while threads other than its main thread still run."""
    try:
        return proc.status() != psutil.STATUS_ZOMBIE or proc.num_threads() > 1
    except psutil.NoSuchProcess:
        return False


def processes_under(state_dir: Path) -> list[psutil.Process]:
    """Live processes whose command line mentions the state dir (PostgreSQL and NATS name their data dir)."""
    return [proc for proc in psutil.process_iter(["cmdline"]) if live(proc) and mentions(proc, state_dir)]


def mentions(proc: psutil.Process, state_dir: Path) -> bool:
    return str(state_dir) in " ".join(proc.info["cmdline"] or [])


def test_free_ports_are_distinct_and_outside_the_ephemeral_range() -> None:
    """An outgoing connection's local port comes from the ephemeral range; a server port picked there could be taken
    before the server binds it."""
    ephemeral_start = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    ports = [port for _ in range(20) for port in free_ports(3)]
    assert len(set(ports)) == len(ports)
    assert all(1024 <= port < ephemeral_start for port in ports)


def test_env_names_every_service(stack: EmbeddedStack) -> None:
    assert set(stack.env) == {
        "WFP_PG_DSN",
        "WFP_PG_ADMIN_DSN",
        "WFP_NATS_URL",
        "WFP_S3_ENDPOINT",
        "WFP_S3_ACCESS_KEY",
        "WFP_S3_SECRET_KEY",
        "WFP_S3_REGION",
        "WFP_S3_BUCKET",
    }
    assert all("127.0.0.1" in stack.env[name] for name in ("WFP_PG_DSN", "WFP_NATS_URL", "WFP_S3_ENDPOINT"))


def test_postgres_has_the_orchestrator_tables(stack: EmbeddedStack) -> None:
    dsn = stack.env["WFP_PG_DSN"]
    tables = pg_rows(
        dsn, "select table_name from information_schema.tables where table_schema = 'orchestrator'"
    )
    assert {name for (name,) in tables} >= ORCHESTRATOR_TABLES

    # The minio-store-sample workflow inserts JSON text into the jsonb column with bound parameters.
    inserted = pg_rows(
        dsn,
        "insert into orchestrator.events (event_type, data) values (%s, %s) returning data, created_at",
        ("workflow_completed", '{"workflow": "minio-store-sample"}'),
    )
    assert inserted[0][0] == {"workflow": "minio-store-sample"}
    assert inserted[0][1] is not None

    # The selects of the fraud-detection workflow.
    pg_rows(dsn, "insert into orchestrator.transactions (customer_id, amount) values (%s, %s)", ("c-1", 12.5))
    unprocessed = pg_rows(
        dsn, "select id, customer_id, amount from orchestrator.transactions where processed_at is null"
    )
    assert [(customer, float(amount)) for _, customer, amount in unprocessed] == [("c-1", 12.5)]
    assert pg_rows(dsn, "select customer_id, risk_score from orchestrator.customer_profiles") == []


def test_postgres_schema_is_idempotent(stack: EmbeddedStack) -> None:
    from workflow_platform.stack.pg_server import apply_schema

    dsn = stack.env["WFP_PG_ADMIN_DSN"]
    tables = "select table_name from information_schema.tables where table_schema = 'orchestrator' order by 1"
    before = pg_rows(dsn, tables)
    kept = pg_rows(
        dsn,
        "insert into orchestrator.events (event_type, data) values ('schema-reapplied', '{}') returning id",
    )
    apply_schema(dsn)  # what every start of the stack does, on data that is already there
    apply_schema(dsn)
    assert pg_rows(dsn, tables) == before and ("events",) in before
    assert pg_rows(dsn, "select id from orchestrator.events where event_type = 'schema-reapplied'") == kept


def test_nats_jetstream_acks_a_publish(stack: EmbeddedStack) -> None:
    async def publish() -> tuple[str, int]:
        client = await nats.connect(stack.env["WFP_NATS_URL"])
        try:
            js = client.jetstream()
            await js.add_stream(name="STACKTEST", subjects=["stacktest.>"])
            ack = await js.publish("stacktest.hello", b'{"hello": "world"}')
            return ack.stream, ack.seq
        finally:
            await client.close()

    assert asyncio.run(publish()) == ("STACKTEST", 1)


def test_s3_has_the_bucket_and_round_trips_an_object(stack: EmbeddedStack) -> None:
    client = minio_client(stack.env)
    bucket = stack.env["WFP_S3_BUCKET"]
    assert client.bucket_exists(bucket)
    body = json.dumps({"rows": 3}).encode()
    client.put_object(bucket, "outputs/test/result.json", io.BytesIO(body), len(body), "application/json")
    response = client.get_object(bucket, "outputs/test/result.json")
    try:
        assert response.read() == body
    finally:
        response.close()
        response.release_conn()


def test_stack_json_describes_the_running_stack(stack: EmbeddedStack) -> None:
    manifest = json.loads((stack.state_dir / "stack.json").read_text())
    assert manifest["env"] == stack.env
    assert set(manifest["services"]) == set(THREE)
    for name in THREE:
        assert (stack.state_dir / "logs" / f"{name}.log").exists()


def test_attach_returns_the_running_stack(stack: EmbeddedStack) -> None:
    attached = EmbeddedStack.attach(stack.state_dir)
    assert attached is not None
    assert attached.env == stack.env
    assert pg_rows(attached.env["WFP_PG_DSN"], "select 1") == [(1,)]


def test_start_again_reuses_the_running_services(stack: EmbeddedStack) -> None:
    again = EmbeddedStack(stack.state_dir, services=THREE).start()
    assert again.handles == stack.handles


def test_attach_without_a_stack_is_none(tmp_path: Path) -> None:
    assert EmbeddedStack.attach(tmp_path) is None


def test_stop_frees_ports_and_restart_keeps_data(tmp_path: Path) -> None:
    first = EmbeddedStack(tmp_path, services=THREE).start()
    pg_rows(
        first.env["WFP_PG_DSN"],
        "insert into orchestrator.merchants (merchant_id, name) values ('m-1', 'Shop')",
    )
    ports, processes = all_ports(first), [handle.process for handle in first.handles.values()]

    # Stopping goes through attach(), as `wfp stack down` does from another process.
    attached = EmbeddedStack.attach(tmp_path)
    assert attached is not None
    attached.stop()
    assert not (tmp_path / "stack.json").exists()
    assert not any(port_open(port) for port in ports)
    assert not any(process.alive() for process in processes)
    assert processes_under(tmp_path) == []
    assert EmbeddedStack.attach(tmp_path) is None

    with EmbeddedStack(tmp_path, services=("postgres",)) as second:
        rows = pg_rows(second.env["WFP_PG_DSN"], "select name from orchestrator.merchants")
        assert rows == [("Shop",)]


def test_start_clears_stale_state(tmp_path: Path) -> None:
    EmbeddedStack(tmp_path, services=("postgres",)).start().stop()
    # A stack.json of dead processes, and a postmaster.pid naming a live process that is not PostgreSQL.
    (tmp_path / "stack.json").write_text(
        json.dumps(
            {
                "services": {
                    "nats": {
                        "name": "nats",
                        "process": {"pid": 2**22 + 1, "create_time": 1.0},
                        "ports": {},
                        "env": {},
                        "log": "",
                        "startup_seconds": 0.0,
                    }
                }
            }
        )
    )
    (tmp_path / "postgres" / "postmaster.pid").write_text(f"{os.getpid()}\n{tmp_path / 'postgres'}\n")

    with EmbeddedStack(tmp_path, services=("postgres",)) as stack:
        assert set(stack.handles) == {"postgres"}
        assert pg_rows(stack.env["WFP_PG_DSN"], "select 1") == [(1,)]


def test_a_failing_service_names_itself_and_stops_the_others(tmp_path: Path) -> None:
    # A data dir that claims to be initialised but holds no cluster: the server refuses to start.
    pgdata = tmp_path / "postgres"
    pgdata.mkdir()
    (pgdata / "PG_VERSION").write_text("9\n")

    children_before = set(psutil.Process().children())
    with pytest.raises(ServiceStartError) as failure:
        EmbeddedStack(tmp_path, services=THREE).start()
    started_here = set(psutil.Process().children()) - children_before

    assert failure.value.service == "postgres"
    message = str(failure.value)
    assert message.startswith("postgres failed to start")
    log = tmp_path / "logs" / "postgres.log"
    assert str(log) in message
    assert log.read_text().splitlines()[-1] in message
    assert not (tmp_path / "stack.json").exists()
    # NATS and S3 started fine in parallel, and were stopped again.
    assert processes_under(tmp_path) == []
    assert [child for child in started_here if live(child)] == []


def test_start_recovers_from_a_killed_postmaster(tmp_path: Path) -> None:
    crashed = EmbeddedStack(tmp_path, services=("postgres",)).start()
    pg_rows(crashed.env["WFP_PG_DSN"], "insert into orchestrator.events (event_type) values ('before-crash')")
    postmaster = crashed.handles["postgres"].process
    os.kill(postmaster.pid, signal.SIGKILL)
    assert wait_gone(postmaster, timeout=5)

    with EmbeddedStack(tmp_path, services=("postgres",)) as stack:
        rows = pg_rows(stack.env["WFP_PG_DSN"], "select event_type from orchestrator.events")
        assert rows == [("before-crash",)]
        # back on its port: the DSNs a running platform holds stay valid
        assert stack.env == crashed.env


def test_default_stack_includes_a_healthy_pathway_service(tmp_path: Path) -> None:
    with EmbeddedStack(tmp_path) as stack:
        assert set(stack.handles) == {"postgres", "nats", "s3", "pathway", "fraud-stream"}
        url = stack.env["WFP_PATHWAY_URL"]
        with urllib.request.urlopen(f"{url}/health", timeout=5) as response:
            assert response.status == 200
        process = stack.handles["pathway"].process
        # The fraud stream's supervisor waits, Pathway not loaded, until the training workflow stores a model.
        supervisor = stack.handles["fraud-stream"]
        status = Status.model_validate_json((tmp_path / "fraud-stream" / "status.json").read_text())
        assert status.state == "waiting" and status.detail == NO_MODEL and status.pid is None
        assert supervisor.log == str(tmp_path.resolve() / "logs" / "fraud-stream.log")
        loaded = {Path(region.path).name for region in psutil.Process(supervisor.process.pid).memory_maps()}
        assert not any(name.startswith("engine.") for name in loaded), loaded  # pathway/engine.*.so
    assert not process.alive() and not supervisor.process.alive()
    assert not port_open(urlparse(url).port or 0)


def put_json(client: Minio, bucket: str, key: str, value: object) -> None:
    body = json.dumps(value).encode()
    client.put_object(bucket, key, io.BytesIO(body), len(body), "application/json")


def test_s3_objects_survive_a_stop_and_start(tmp_path: Path) -> None:
    with EmbeddedStack(tmp_path, services=("s3",)) as first:
        bucket = first.env["WFP_S3_BUCKET"]
        put_json(minio_client(first.env), bucket, "reports/kept.json", {"rows": 3})
        first_env = first.env
    assert processes_under(tmp_path) == []

    with EmbeddedStack(tmp_path, services=("s3",)) as second:
        assert read_json_object(minio_client(second.env), bucket, "reports/kept.json") == {"rows": 3}
        # The credentials are the ones generated on the first start, kept where only their owner reads them.
        assert {k: v for k, v in second.env.items() if k != "WFP_S3_ENDPOINT"} == {
            k: v for k, v in first_env.items() if k != "WFP_S3_ENDPOINT"
        }
        assert (tmp_path / "s3" / "identities.json").stat().st_mode & 0o777 == 0o600
        assert (tmp_path / "stack.json").stat().st_mode & 0o777 == 0o600


def test_s3_objects_survive_a_sigkill_of_the_server(tmp_path: Path) -> None:
    crashed = EmbeddedStack(tmp_path, services=("s3",)).start()
    bucket = crashed.env["WFP_S3_BUCKET"]
    put_json(minio_client(crashed.env), bucket, "models/kept.json", {"version": 1})
    server = crashed.handles["s3"].process
    os.kill(server.pid, signal.SIGKILL)
    assert wait_gone(server, timeout=5)

    with EmbeddedStack(tmp_path, services=("s3",)) as restarted:
        assert read_json_object(minio_client(restarted.env), bucket, "models/kept.json") == {"version": 1}
        assert restarted.started == ("s3",)
        assert restarted.env == crashed.env  # back on its recorded ports: the same endpoint


def test_leaving_a_stack_stops_only_what_it_started(tmp_path: Path) -> None:
    """A dead service of a running stack is restarted alone; on exit the adopted ones keep running."""
    up = EmbeddedStack(tmp_path, services=("postgres", "nats")).start()
    try:
        postgres, nats_server = up.handles["postgres"].process, up.handles["nats"].process
        os.kill(nats_server.pid, signal.SIGKILL)
        assert wait_gone(nats_server, timeout=5)

        with EmbeddedStack(tmp_path, services=("postgres", "nats")) as run:
            assert run.handles["postgres"].process == postgres
            restarted = run.handles["nats"].process
            assert restarted != nats_server and restarted.alive()
            run_env = run.env
        assert postgres.alive()
        assert pg_rows(up.env["WFP_PG_DSN"], "select 1") == [(1,)]
        assert not restarted.alive()
        recorded = json.loads((tmp_path / "stack.json").read_text())["services"]
        assert set(recorded) == {"postgres"}
        assert run_env == up.env  # nats came back on its recorded ports
    finally:
        EmbeddedStack(tmp_path).stop()
    assert processes_under(tmp_path) == []


def test_no_second_server_over_a_data_dir_in_use(tmp_path: Path) -> None:
    """A live server that stack.json does not record (record lost): starting refuses instead of doubling it."""
    first = EmbeddedStack(tmp_path, services=("nats",)).start()
    server = first.handles["nats"].process
    try:
        (tmp_path / "stack.json").unlink()
        with pytest.raises(ServiceStartError) as refused:
            EmbeddedStack(tmp_path, services=("nats",)).start()
        assert refused.value.service == "nats"
        assert "in use" in str(refused.value) and str(server.pid) in str(refused.value)
        assert server.alive()
        assert [proc.pid for proc in processes_under(tmp_path)] == [server.pid]
    finally:
        stop_process(server)
