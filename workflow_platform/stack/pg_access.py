"""Who connects to the embedded PostgreSQL, and how: two roles with passwords, nobody on trust.

The platform's admin (the bootstrap superuser: schemas, demo data, the Dagster database) and the workflows'
role (what steps connect as: sql/workflows_role.sql). Each password is random, made on the first start and
kept in a passfile (libpq's .pgpass format, mode 0600) in the stack's state dir; the DSNs name the passfile
(`?passfile=`) instead of carrying the password, so no secret lands in stack.json, `wfp stack env` or a log.
Data dirs of older versions (trust authentication, no workflows role) are upgraded on their next start.
"""

from __future__ import annotations

import os
import secrets
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from urllib.parse import quote

import psycopg2.extensions
from psycopg2 import sql

ADMIN_ROLE = "postgres"
WORKFLOWS_ROLE = "wfp_workflows"  # named in sql/workflows_role.sql and deploy/postgres/
DATABASE = "postgres"
# A data dir whose pg_hba.conf is not this one is from before passwords (it trusted every local connection) or
# was edited: it is written again on start.
HBA_MARKER = "# workflow-platform: password authentication only (written again on start if changed)"
HBA = f"""{HBA_MARKER}
local all all scram-sha-256
host  all all 127.0.0.1/32 scram-sha-256
host  all all ::1/128 scram-sha-256
"""


@dataclass(frozen=True)
class Login:
    role: str
    passfile: Path
    password: str = field(repr=False)

    def dsn(self, host: str, port: int, database: str = DATABASE) -> str:
        return f"postgresql://{self.role}@{host}:{port}/{database}?passfile={quote(str(self.passfile))}"


def login(state_dir: Path, role: str) -> Login:
    """The role's password from its passfile, made on first use."""
    passfile = state_dir / f"postgres-{role}.pgpass"
    if not passfile.exists():
        # URL-safe characters only: nothing .pgpass escapes (':' '\\') or a URL would have to.
        line = f"*:*:*:{role}:{secrets.token_urlsafe(32)}\n"
        descriptor = os.open(passfile, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(descriptor, "w") as out:
            out.write(line)
    passfile.chmod(0o600)  # libpq ignores a passfile others may read
    *_, user, password = passfile.read_text().strip().split(":", 4)
    if user != role or not password:
        raise ValueError(f"{passfile} holds no password for role {role}")
    return Login(role, passfile, password)


def hba_is_current(pgdata: Path) -> bool:
    hba = pgdata / "pg_hba.conf"
    return hba.exists() and hba.read_text() == HBA


def write_hba(pgdata: Path, owner: tuple[int, int] | None) -> None:
    hba = pgdata / "pg_hba.conf"
    hba.write_text(HBA)
    if owner is not None:
        os.chown(hba, *owner)
    hba.chmod(0o600)


def set_password(connection: psycopg2.extensions.connection, account: Login) -> None:
    """Only the SCRAM verifier, computed here, reaches the server: never the password (statement logs)."""
    verifier = psycopg2.extensions.encrypt_password(
        account.password, account.role, connection, "scram-sha-256"
    )
    with connection.cursor() as cursor:
        cursor.execute(
            sql.SQL("ALTER ROLE {} PASSWORD {}").format(sql.Identifier(account.role), sql.Literal(verifier))
        )


def apply_workflows_role(connection: psycopg2.extensions.connection, workflows: Login) -> None:
    """Create or update the workflows' role and its privileges (sql/workflows_role.sql), with its password."""
    grants = resources.files("workflow_platform").joinpath("sql/workflows_role.sql").read_text()
    with connection.cursor() as cursor:
        cursor.execute(grants)
    set_password(connection, workflows)
