"""The cursor of a workflow `trigger` sensor: which rows of the watched table are settled, and which of them were
already handed to runs.

Why not `max(id)`: an id is taken when a row is inserted, but the row becomes visible when its transaction commits.
Transaction A takes id N, transaction B takes N+1 and commits first: a cursor moved to `max(id)` = N+1 passes N,
which A commits later, and row N is never processed.

So a batch only ever reaches up to a *settled* value: one below which every row that will ever exist is already
committed. After reading the column's current maximum M, the sensor lists the transactions that hold a write lock
(RowExclusiveLock) on the table or on the sequence that fills the column. A transaction that took an id below M
took it before M was taken (a sequence only grows), so it locked the sequence then and holds that lock until it
ends: if no such transaction is listed, M is settled at once; otherwise M becomes settled at a later tick, once
every listed transaction has ended (committed or rolled back). The listed transactions are kept in the cursor by
virtual transaction id, so a restarted daemon goes on waiting for the same ones.

`startAfter: latest` on a table that is empty at the first tick: the starting point is not fixed at 0 (a bulk
load afterwards, such as `wfp seed transactions`, would turn every historical row into new rows). The cursor waits
(`starting`) until the table has rows, and starts after the first settled value: the rows of the first load
(one transaction, or several committing before the table settles) are history, every row committed above them is
processed. Rows above the starting point go through the same settled logic as any other, so none is skipped; what
the first load committed below it is, by the definition of `latest`, before the start. To process the first rows
of an empty table too, give `startAfter: 0`.

Cost: a transaction that writes the table and stays open (a long load, a session idle in transaction) holds back
every row above the ones settled before it began, until it ends.
Assumes the column is filled by a sequence (serial, identity or a nextval default) with CACHE 1, the default: ids
cached per session, or chosen by the application, can still be committed below a settled value.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

from workflow_platform.language.spec import TriggerSpec

if TYPE_CHECKING:
    from workflow_platform.resources.postgres import PostgresResource

MAX_BATCHES_PER_TICK = 20


@dataclass(frozen=True)
class RowCursor:
    """`after`: rows up to it were handed to runs. `settled`: every row up to it that will ever exist is committed.
    `pending`: becomes settled once the transactions in `waiting` (virtual transaction ids) have ended.
    `starting`: `startAfter: latest` met an empty table; the start is the first settled value above `after`."""

    after: int
    settled: int
    pending: int | None = None
    waiting: tuple[str, ...] = ()
    starting: bool = False

    @classmethod
    def start(cls, after: int) -> RowCursor:
        return cls(after=after, settled=after)

    @classmethod
    def parse(cls, text: str) -> RowCursor:
        """The stored cursor; a bare integer is the cursor of earlier versions (`max(id)` handed to runs)."""
        value = json.loads(text)
        if isinstance(value, int):
            return cls.start(value)
        return cls(
            after=int(value["after"]),
            settled=int(value["settled"]),
            pending=value.get("pending"),
            waiting=tuple(value.get("waiting", ())),
            starting=value.get("start") == "latest",
        )

    def dump(self) -> str:
        state: dict[str, Any] = {"after": self.after, "settled": self.settled}
        if self.waiting:
            state |= {"pending": self.pending, "waiting": list(self.waiting)}
        if self.starting:
            state["start"] = "latest"
        return json.dumps(state, separators=(",", ":"))


def table_and_column(trigger: TriggerSpec) -> tuple[Any, Any]:
    from psycopg2 import sql

    schema, _, table = trigger.table.rpartition(".")
    return sql.Identifier(schema, table) if schema else sql.Identifier(table), sql.Identifier(trigger.column)


def latest_value(cursor: Any, trigger: TriggerSpec) -> int:
    """The trigger column's current maximum among committed rows (0 for an empty table)."""
    from psycopg2 import sql

    name, column = table_and_column(trigger)
    cursor.execute(sql.SQL("SELECT coalesce(max({}), 0) FROM {}").format(column, name))
    return int(cursor.fetchone()[0])


# The table, and the sequences that fill the column: owned by it (serial, identity) or named by its default.
WATCHED_RELATIONS = """
WITH col AS (
    SELECT attrelid, attnum FROM pg_attribute WHERE attrelid = %(table)s::regclass AND attname = %(column)s
)
SELECT attrelid FROM col
UNION
SELECT d.objid FROM pg_depend d JOIN col ON d.refobjid = col.attrelid AND d.refobjsubid = col.attnum
 WHERE d.classid = 'pg_class'::regclass AND d.refclassid = 'pg_class'::regclass AND d.deptype IN ('a', 'i')
UNION
SELECT d.refobjid FROM pg_attrdef ad JOIN col ON ad.adrelid = col.attrelid AND ad.adnum = col.attnum
  JOIN pg_depend d ON d.classid = 'pg_attrdef'::regclass AND d.objid = ad.oid AND d.refclassid = 'pg_class'::regclass
  JOIN pg_class s ON s.oid = d.refobjid AND s.relkind = 'S'
"""

# INSERT, COPY and nextval take RowExclusiveLock and keep it until their transaction ends. pg_locks is readable by
# any role (the sensor connects as the non-superuser workflows role).
WRITING_TRANSACTIONS = """
SELECT DISTINCT virtualtransaction FROM pg_locks
 WHERE locktype = 'relation' AND mode = 'RowExclusiveLock' AND relation = ANY(%(relations)s::oid[])
   AND database = (SELECT oid FROM pg_database WHERE datname = current_database())
   AND pid IS DISTINCT FROM pg_backend_pid()
 ORDER BY 1
"""

STILL_RUNNING = "SELECT DISTINCT virtualtransaction FROM pg_locks WHERE virtualtransaction = ANY(%(waiting)s)"


def writing_transactions(cursor: Any, trigger: TriggerSpec) -> tuple[str, ...]:
    """Virtual ids of the transactions that may still commit a row of the table."""
    name, _ = table_and_column(trigger)
    cursor.execute(WATCHED_RELATIONS, {"table": name.as_string(cursor), "column": trigger.column})
    relations = [row[0] for row in cursor.fetchall()]
    cursor.execute(WRITING_TRANSACTIONS, {"relations": relations})
    return tuple(row[0] for row in cursor.fetchall())


def still_running(cursor: Any, waiting: tuple[str, ...]) -> bool:
    # A transaction holds its own virtual transaction id lock until it ends (a prepared one keeps its other locks).
    cursor.execute(STILL_RUNNING, {"waiting": list(waiting)})
    return cursor.fetchone() is not None


def settle(cursor: Any, trigger: TriggerSpec, state: RowCursor) -> RowCursor:
    """Move `settled` as far as no transaction still in progress can commit a row below it."""
    if state.waiting and still_running(cursor, state.waiting):
        return state
    settled = max(state.settled, state.pending or 0)
    # The maximum first, the lock holders after: whoever took a lower id and has not ended holds its lock then.
    latest = latest_value(cursor, trigger)
    if latest <= settled:
        return replace(state, settled=settled, pending=None, waiting=())
    writers = writing_transactions(cursor, trigger)
    if writers:
        return replace(state, settled=settled, pending=latest, waiting=writers)
    return replace(state, settled=latest, pending=None, waiting=())


def first_rows_settled(cursor: Any, trigger: TriggerSpec, state: RowCursor) -> RowCursor:
    """`starting`: the cursor that starts after the table's first rows once they are settled (no transaction that
    may commit one below them is still running), or the same waiting cursor."""
    if state.waiting and not still_running(cursor, state.waiting):
        return RowCursor.start(int(state.pending or state.after))
    settled = settle(cursor, trigger, state)
    return RowCursor.start(settled.settled) if settled.settled > state.after else settled


def row_batches(cursor: Any, trigger: TriggerSpec, after: int, through: int) -> list[dict[str, Any]]:
    """Consecutive batches of the rows in (after, through]: [{after, through, count}], oldest first."""
    from psycopg2 import sql

    name, column = table_and_column(trigger)
    query = sql.SQL(
        "SELECT max(c), count(*) FROM (SELECT {col} AS c FROM {tbl} WHERE {col} > %s AND {col} <= %s"
        " ORDER BY {col} LIMIT %s) batch"
    ).format(col=column, tbl=name)
    batches = []
    for _ in range(MAX_BATCHES_PER_TICK):
        cursor.execute(query, (after, through, trigger.batchSize))
        last, count = cursor.fetchone()
        if not count:
            break
        batches.append(batch_payload(trigger, after, int(last), count))
        after = int(last)
    return batches


def batch_payload(trigger: TriggerSpec, after: int, through: int, count: int) -> dict[str, Any]:
    return {
        "table": trigger.table,
        "column": trigger.column,
        "after": after,
        "through": through,
        "count": count,
    }


def next_batches(
    postgres: PostgresResource, trigger: TriggerSpec, state: RowCursor
) -> tuple[RowCursor, list[dict[str, Any]]]:
    """The batches of settled rows not yet handed to runs, and the cursor after them."""
    with postgres.autocommit() as cursor:
        if state.starting:
            return first_rows_settled(cursor, trigger, state), []
        state = settle(cursor, trigger, state)
        batches = row_batches(cursor, trigger, state.after, state.settled)
    return (replace(state, after=batches[-1]["through"]) if batches else state), batches


def start_at_latest(postgres: PostgresResource, trigger: TriggerSpec) -> RowCursor:
    """After the latest committed row; on an empty table, a cursor waiting for the first rows (see `starting`)."""
    with postgres.autocommit() as cursor:
        latest = latest_value(cursor, trigger)
    return RowCursor.start(latest) if latest else replace(RowCursor.start(0), starting=True)


def count_rows(postgres: PostgresResource, trigger: TriggerSpec, after: int, through: int) -> int:
    from psycopg2 import sql

    name, column = table_and_column(trigger)
    with postgres.autocommit() as cursor:
        cursor.execute(
            sql.SQL("SELECT count(*) FROM {} WHERE {} > %s AND {} <= %s").format(name, column, column),
            (after, through),
        )
        return int(cursor.fetchone()[0])


def rows_batch(postgres: PostgresResource, trigger: TriggerSpec, after: int, through: int) -> dict[str, Any]:
    """The trigger payload of a batch named by hand (`wfp run --rows AFTER:THROUGH`), its rows counted."""
    return batch_payload(trigger, after, through, count_rows(postgres, trigger, after, through))
