#!/bin/sh
# docker-compose's postgres, first start only (docker-entrypoint-initdb.d, after 10-orchestrator.sql and
# 20-workflows-role.sql): the workflows' role gets its password, which has no default, and Dagster's storage
# gets a database of its own that no other role may connect to (workflow steps never reach runs or event logs).
# The password reaches psql through its environment (\getenv), not its command line.
set -e
: "${WFP_PG_WORKFLOWS_PASSWORD:?set WFP_PG_WORKFLOWS_PASSWORD (e.g. in .env)}"
psql -v ON_ERROR_STOP=1 --no-psqlrc --username "$POSTGRES_USER" --dbname "$POSTGRES_DB" <<'SQL'
\getenv workflows_password WFP_PG_WORKFLOWS_PASSWORD
ALTER ROLE wfp_workflows PASSWORD :'workflows_password';
CREATE DATABASE dagster;
REVOKE CONNECT, TEMPORARY ON DATABASE dagster FROM PUBLIC;
SQL
