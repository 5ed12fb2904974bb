-- The role workflow steps connect as (WFP_PG_DSN), with the privileges the workflows need and no more: it reads
-- and writes the orchestrator tables, reads the sales dataset, and is no superuser, creates nothing and holds
-- no role that reaches the server's files or programs (COPY ... TO PROGRAM, pg_read_file, lo_export).
-- Run by the platform's admin (the owner of the schemas: WFP_PG_ADMIN_DSN) in the workflows' database, on
-- every start of the embedded stack and on docker-compose's first start; every statement is idempotent.
-- The password is not set here (it has no default): stack/pg_access.py and deploy/postgres/ set it.

DO $$
BEGIN
    IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'wfp_workflows') THEN
        CREATE ROLE wfp_workflows LOGIN;
    END IF;
END
$$;
ALTER ROLE wfp_workflows LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS;

-- A member of a role may act with its privileges (or SET ROLE to it): drop memberships that lead to a
-- superuser, to role creation or to the server's files and programs, however they were granted.
DO $$
DECLARE
    membership record;
BEGIN
    FOR membership IN
        SELECT r.rolname AS granted, g.rolname AS grantor
        FROM pg_auth_members m
        JOIN pg_roles r ON r.oid = m.roleid
        JOIN pg_roles g ON g.oid = m.grantor
        WHERE m.member = 'wfp_workflows'::regrole
          AND (r.rolcreaterole
               OR pg_has_role(r.oid, 'pg_execute_server_program', 'MEMBER')
               OR pg_has_role(r.oid, 'pg_read_server_files', 'MEMBER')
               OR pg_has_role(r.oid, 'pg_write_server_files', 'MEMBER'))  -- true for superusers too
    LOOP
        EXECUTE format('REVOKE %I FROM wfp_workflows GRANTED BY %I CASCADE', membership.granted, membership.grantor);
    END LOOP;
END
$$;

DO $$
BEGIN
    EXECUTE format('GRANT CONNECT ON DATABASE %I TO wfp_workflows', current_database());
END
$$;
-- PostgreSQL 15 and later already keep everyone but the database owner from creating objects in public.
REVOKE CREATE ON SCHEMA public FROM PUBLIC;

-- orchestrator: events and transactions are inserted, transactions scored (updated); nothing is deleted.
CREATE SCHEMA IF NOT EXISTS orchestrator;
GRANT USAGE ON SCHEMA orchestrator TO wfp_workflows;
GRANT SELECT, INSERT, UPDATE ON ALL TABLES IN SCHEMA orchestrator TO wfp_workflows;
GRANT USAGE ON ALL SEQUENCES IN SCHEMA orchestrator TO wfp_workflows;  -- bigserial defaults
ALTER DEFAULT PRIVILEGES IN SCHEMA orchestrator GRANT SELECT, INSERT, UPDATE ON TABLES TO wfp_workflows;
ALTER DEFAULT PRIVILEGES IN SCHEMA orchestrator GRANT USAGE ON SEQUENCES TO wfp_workflows;

-- sales: the demo dataset (`wfp seed sales` creates and replaces its tables later), only ever read.
CREATE SCHEMA IF NOT EXISTS sales;
GRANT USAGE ON SCHEMA sales TO wfp_workflows;
GRANT SELECT ON ALL TABLES IN SCHEMA sales TO wfp_workflows;
ALTER DEFAULT PRIVILEGES IN SCHEMA sales GRANT SELECT ON TABLES TO wfp_workflows;
