-- The demo sales dataset (`wfp seed sales`): products, customers, orders and their line items.
CREATE SCHEMA IF NOT EXISTS sales;

CREATE TABLE IF NOT EXISTS sales.products (
    product_id  integer PRIMARY KEY,
    name        text NOT NULL,
    category    text NOT NULL,
    unit_price  numeric(10, 2) NOT NULL
);

CREATE TABLE IF NOT EXISTS sales.customers (
    customer_id integer PRIMARY KEY,
    name        text NOT NULL,
    region      text NOT NULL
);

CREATE TABLE IF NOT EXISTS sales.orders (
    order_id    bigint PRIMARY KEY,
    customer_id integer NOT NULL,
    region      text NOT NULL,
    created_at  timestamptz NOT NULL
);
CREATE INDEX IF NOT EXISTS orders_created_idx ON sales.orders (created_at);

CREATE TABLE IF NOT EXISTS sales.order_items (
    order_id    bigint NOT NULL,
    line        smallint NOT NULL,
    product_id  integer NOT NULL,
    quantity    integer NOT NULL,
    unit_price  numeric(10, 2) NOT NULL,
    PRIMARY KEY (order_id, line)
);
