-- Tables of the original orchestrator that the shipped workflows read and write (schema `orchestrator`).
-- Applied on every start of the embedded stack, so every statement must be idempotent.

CREATE SCHEMA IF NOT EXISTS orchestrator;

-- Workflow events; `data` takes JSON text from workflow inputs (e.g. '{"workflow": "minio-store-sample"}').
CREATE TABLE IF NOT EXISTS orchestrator.events (
    id          bigserial PRIMARY KEY,
    event_type  text NOT NULL,
    data        jsonb,
    created_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS events_type_created_idx ON orchestrator.events (event_type, created_at);

CREATE TABLE IF NOT EXISTS orchestrator.merchants (
    merchant_id text PRIMARY KEY,
    name        text NOT NULL,
    category    text,
    risk_level  text,
    latitude    double precision,
    longitude   double precision
);

-- Per-customer baseline the fraud models compare a transaction against.
CREATE TABLE IF NOT EXISTS orchestrator.customer_profiles (
    customer_id     text PRIMARY KEY,
    risk_score      double precision,
    avg_amount      numeric(12, 2),
    std_amount      numeric(12, 2),
    home_latitude   double precision,
    home_longitude  double precision,
    created_at      timestamptz NOT NULL DEFAULT now()
);

-- No foreign keys: transactions arrive before their customer or merchant is profiled.
CREATE TABLE IF NOT EXISTS orchestrator.transactions (
    id            bigserial PRIMARY KEY,
    customer_id   text NOT NULL,
    merchant_id   text,
    amount        numeric(12, 2) NOT NULL,
    currency      text NOT NULL DEFAULT 'USD',
    created_at    timestamptz NOT NULL DEFAULT now(),
    latitude      double precision,
    longitude     double precision,
    processed_at  timestamptz,
    risk_score    double precision,
    fraud_flag    boolean
);
-- The fraud workflow polls `processed_at IS NULL`; a partial index keeps that cheap as history grows.
CREATE INDEX IF NOT EXISTS transactions_unprocessed_idx
    ON orchestrator.transactions (created_at) WHERE processed_at IS NULL;
CREATE INDEX IF NOT EXISTS transactions_customer_created_idx
    ON orchestrator.transactions (customer_id, created_at);

-- Simulated transactions (workflow_platform/fraud, `wfp seed transactions`): the handbook's terminal, label,
-- fraud scenario and time offsets, and the key that makes loading idempotent. A loaded row is identified by
-- (source, source_tx_id), e.g. ('handbook-sim/<config key>', TRANSACTION_ID); rows written by workflows leave
-- both NULL, which the unique index allows any number of times.
ALTER TABLE orchestrator.transactions ADD COLUMN IF NOT EXISTS source text;
ALTER TABLE orchestrator.transactions ADD COLUMN IF NOT EXISTS source_tx_id bigint;
ALTER TABLE orchestrator.transactions ADD COLUMN IF NOT EXISTS terminal_id bigint;
ALTER TABLE orchestrator.transactions ADD COLUMN IF NOT EXISTS tx_fraud smallint;
ALTER TABLE orchestrator.transactions ADD COLUMN IF NOT EXISTS tx_fraud_scenario smallint;
ALTER TABLE orchestrator.transactions ADD COLUMN IF NOT EXISTS tx_time_seconds bigint;
ALTER TABLE orchestrator.transactions ADD COLUMN IF NOT EXISTS tx_time_days integer;
CREATE UNIQUE INDEX IF NOT EXISTS transactions_source_tx_idx
    ON orchestrator.transactions (source, source_tx_id);
-- fraud-detection-workflow reads each batch's terminals' last 37 days.
CREATE INDEX IF NOT EXISTS transactions_terminal_created_idx
    ON orchestrator.transactions (terminal_id, created_at);

-- Idempotent events: a workflow that must record an event once per execution upserts it with a key derived from
-- the run's root and the step (`"idempotency_key": "{{ run.root_id }}/<step>"`, conflict DO NOTHING), so
-- re-executing the run adds no second row. NULL (the original workflows' inserts) is allowed any number of times.
ALTER TABLE orchestrator.events ADD COLUMN IF NOT EXISTS idempotency_key text;
CREATE UNIQUE INDEX IF NOT EXISTS events_idempotency_key_idx ON orchestrator.events (idempotency_key);
