"""Transactions and customer profiles -> the typed rows the fraud dataflow works on.

Fields read (the first name that has a value; a row without one is also looked up in its `data` object):

| table | field | names |
|---|---|---|
| transactions | id | `id`, `transaction_id` (given back as is) |
| | customer | `customer_id` (compared as text, so 7 and "7" are one customer) |
| | amount | `amount` |
| | time | `created_at`, `timestamp` (ISO 8601, a timestamp, or epoch s/ms; naive = UTC) |
| | location | `latitude`/`lat`, `longitude`/`lon`/`lng` (degrees) |
| profiles | customer | `customer_id` (rows without one are ignored; the first row of a customer wins) |
| | risk | `risk_score` (a fraction, or a percentage when above 1) |
| | baseline | `avg_amount`, `std_amount` |
| | home | `home_latitude`, `home_longitude` |
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd

from ...row_fields import RowFields, epoch_seconds_of, json_value, numbers_of, texts_of
from .rules import profile_risk

# (position in the input, id, customer, amount, epoch seconds, latitude, longitude)
Transaction = tuple[int, Any, str | None, float | None, float | None, float | None, float | None]
# (customer, risk as a fraction, risk_score as given, avg_amount, std_amount, home latitude, home longitude)
Profile = tuple[str, float, float | None, float | None, float | None, float | None, float | None]


def transactions(frame: pd.DataFrame) -> list[Transaction]:
    fields = RowFields(frame)
    latitude, longitude = _coordinates(fields, ("latitude", "lat"), ("longitude", "lon", "lng"))
    return list(
        zip(
            range(len(frame)),
            [json_value(value) for value in fields.raw("id", "transaction_id").tolist()],
            _texts(fields.raw("customer_id")),
            _optional(numbers_of(fields.raw("amount"))[0]),
            _optional(epoch_seconds_of(fields.raw("created_at", "timestamp"))[0]),
            latitude,
            longitude,
            strict=True,
        )
    )


def profiles(frame: pd.DataFrame) -> list[Profile]:
    fields = RowFields(frame)
    customers = _texts(fields.raw("customer_id"))
    risk = _optional(numbers_of(fields.raw("risk_score"))[0])
    home_latitude, home_longitude = _coordinates(fields, ("home_latitude",), ("home_longitude",))
    found: dict[str, Profile] = {}
    for customer, *rest in zip(
        customers,
        risk,
        _optional(numbers_of(fields.raw("avg_amount"))[0]),
        _optional(numbers_of(fields.raw("std_amount"))[0]),
        home_latitude,
        home_longitude,
        strict=True,
    ):
        if customer is not None and customer not in found:
            found[customer] = (customer, profile_risk(rest[0]), *rest)
    return list(found.values())


def _coordinates(
    fields: RowFields, latitude_names: tuple[str, ...], longitude_names: tuple[str, ...]
) -> tuple[list[float | None], list[float | None]]:
    """Latitudes and longitudes in degrees; a pair with either value missing or out of range is no location."""
    latitude = numbers_of(fields.raw(*latitude_names))[0]
    longitude = numbers_of(fields.raw(*longitude_names))[0]
    located = (np.abs(latitude) <= 90) & (np.abs(longitude) <= 180)
    return _optional(np.where(located, latitude, np.nan)), _optional(np.where(located, longitude, np.nan))


def _texts(raw: pd.Series) -> list[str | None]:
    return [None if value is None or value != value else value for value in texts_of(raw).tolist()]


def _optional(values: np.ndarray) -> list[float | None]:
    return [None if math.isnan(value) else value for value in values.tolist()]
