"""`wfp seed sales`: a realistic, deterministic sales dataset in the `sales` schema, loaded with COPY.

Same arguments, same rows: products with categories and prices, customers in regions, orders spread over the
day (busier in the afternoon), each with 1-4 line items. Re-seeding replaces the dataset (idempotent).
"""

from __future__ import annotations

import io
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from importlib import resources

import numpy as np
import pandas as pd
import psycopg2

REGIONS = ("North America", "Europe", "Asia Pacific", "Latin America", "Middle East", "Africa")
REGION_WEIGHTS = (0.32, 0.27, 0.22, 0.09, 0.06, 0.04)
CATEGORIES = {
    "Electronics": ("Laptop", "Headphones", "Monitor", "Keyboard", "Webcam", "Tablet", "Speaker"),
    "Home": ("Coffee Maker", "Desk Lamp", "Blender", "Vacuum", "Air Purifier", "Kettle"),
    "Outdoor": ("Tent", "Backpack", "Water Bottle", "Hiking Boots", "Camping Stove"),
    "Books": ("Data Engineering Handbook", "SQL Cookbook", "Streaming Systems", "Python Tricks"),
    "Apparel": ("Rain Jacket", "Running Shoes", "Wool Sweater", "Cap", "T-Shirt"),
    "Office": ("Notebook", "Ergonomic Chair", "Standing Desk", "Pen Set"),
}
PRICE_RANGE = {
    "Electronics": (40, 1400),
    "Home": (20, 400),
    "Outdoor": (10, 350),
    "Books": (15, 60),
    "Apparel": (12, 220),
    "Office": (5, 700),
}
# Orders per hour of the day (UTC), relative: quiet nights, busy afternoons.
HOURLY_PROFILE = np.array(
    [1, 1, 1, 1, 1, 2, 3, 5, 7, 8, 9, 10, 11, 11, 12, 12, 11, 10, 9, 8, 6, 4, 3, 2], dtype=float
)


@dataclass(frozen=True)
class SalesSeed:
    days: int = 7
    orders_per_day: int = 2000
    seed: int = 7
    end: date = field(default_factory=lambda: datetime.now(UTC).date() - timedelta(days=1))  # yesterday, UTC
    customers: int = 5000

    @property
    def start(self) -> date:
        return self.end - timedelta(days=self.days - 1)


def products_frame(rng: np.random.Generator) -> pd.DataFrame:
    rows = []
    for category, names in CATEGORIES.items():
        low, high = PRICE_RANGE[category]
        for name in names:
            rows.append(
                {"name": name, "category": category, "unit_price": round(float(rng.uniform(low, high)), 2)}
            )
    frame = pd.DataFrame(rows)
    frame.insert(0, "product_id", np.arange(1, len(frame) + 1))
    return frame


def customers_frame(rng: np.random.Generator, count: int) -> pd.DataFrame:
    regions = rng.choice(len(REGIONS), size=count, p=REGION_WEIGHTS)
    return pd.DataFrame(
        {
            "customer_id": np.arange(1, count + 1),
            "name": [f"Customer {i:05d}" for i in range(1, count + 1)],
            "region": np.array(REGIONS)[regions],
        }
    )


def orders_frames(
    rng: np.random.Generator, seed: SalesSeed, customers: pd.DataFrame, products: pd.DataFrame
) -> tuple[pd.DataFrame, pd.DataFrame]:
    total = seed.days * seed.orders_per_day
    day_index = np.repeat(np.arange(seed.days), seed.orders_per_day)
    hours = rng.choice(24, size=total, p=HOURLY_PROFILE / HOURLY_PROFILE.sum())
    seconds = hours * 3600 + rng.integers(0, 3600, size=total)
    start = pd.Timestamp(seed.start, tz="UTC")
    created = start + pd.to_timedelta(day_index, unit="D") + pd.to_timedelta(seconds, unit="s")
    # Loyal customers order more often than most: a mild power law over customers.
    loyalty = 1 / np.arange(1, len(customers) + 1) ** 0.6
    customer_rank = rng.choice(len(customers), size=total, p=loyalty / loyalty.sum())
    customer_ids = customers["customer_id"].to_numpy()[customer_rank]
    orders = pd.DataFrame(
        {
            "customer_id": customer_ids,
            "region": customers["region"].to_numpy()[customer_rank],
            "created_at": created,
        }
    ).sort_values("created_at", kind="stable", ignore_index=True)
    orders.insert(0, "order_id", np.arange(1, total + 1, dtype=np.int64))  # ids in time order
    lines_per_order = rng.choice([1, 2, 3, 4], size=total, p=[0.55, 0.25, 0.13, 0.07])
    order_of_line = np.repeat(orders["order_id"].to_numpy(), lines_per_order)
    line_numbers = _line_numbers(lines_per_order)
    popularity = 1 / np.arange(1, len(products) + 1) ** 0.8
    product_index = rng.choice(len(products), size=len(order_of_line), p=popularity / popularity.sum())
    items = pd.DataFrame(
        {
            "order_id": order_of_line,
            "line": line_numbers,
            "product_id": products["product_id"].to_numpy()[product_index],
            "quantity": rng.choice([1, 2, 3, 4, 5], size=len(order_of_line), p=[0.6, 0.2, 0.1, 0.06, 0.04]),
            "unit_price": products["unit_price"].to_numpy()[product_index],
        }
    )
    return orders, items


def _line_numbers(lines_per_order: np.ndarray) -> np.ndarray:
    ends = np.cumsum(lines_per_order)
    starts = np.repeat(ends - lines_per_order, lines_per_order)
    return np.arange(ends[-1] if len(ends) else 0) - starts + 1


def generate(seed: SalesSeed) -> dict[str, pd.DataFrame]:
    rng = np.random.default_rng(seed.seed)
    products = products_frame(rng)
    customers = customers_frame(rng, seed.customers)
    orders, items = orders_frames(rng, seed, customers, products)
    return {"products": products, "customers": customers, "orders": orders, "order_items": items}


def _copy(cursor: psycopg2.extensions.cursor, table: str, frame: pd.DataFrame) -> None:
    buffer = io.StringIO()
    frame.to_csv(buffer, index=False, header=False, date_format="%Y-%m-%d %H:%M:%S%z")
    buffer.seek(0)
    columns = ", ".join(frame.columns)
    cursor.copy_expert(f"COPY sales.{table} ({columns}) FROM STDIN WITH (FORMAT csv)", buffer)


def load(pg_dsn: str, seed: SalesSeed) -> dict[str, int]:
    """Replace the sales dataset with the one these arguments describe; returns the row counts."""
    frames = generate(seed)
    schema = resources.files("workflow_platform").joinpath("sql/sales.sql").read_text()
    with psycopg2.connect(pg_dsn) as connection, connection.cursor() as cursor:
        cursor.execute(schema)
        cursor.execute("TRUNCATE sales.order_items, sales.orders, sales.customers, sales.products")
        for table in ("products", "customers", "orders", "order_items"):
            _copy(cursor, table, frames[table])
        cursor.execute("ANALYZE sales.orders; ANALYZE sales.order_items")
    return {table: len(frame) for table, frame in frames.items()}
