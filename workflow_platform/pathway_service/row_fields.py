"""Typed columns out of loosely typed rows: the conversions every pipeline applies to the fields it reads.

Rows arrive as JSON objects, CSV, JSON lines or Parquet, so one field can be a number, numeric text, null or
NaN. Each conversion is vectorised and says, per row, why a value is unusable, as a small integer:
- USABLE (0);
- MISSING: absent, null, blank text, or NaN (NaN is how pandas and many writers mark a missing number);
- INVALID: present but not a value of the type (text that is not a number, a boolean, infinity, a date that
  cannot be parsed).
"""

from __future__ import annotations

import datetime as dt
import json
import math
import numbers
from typing import Any

import numpy as np
import pandas as pd
from pandas.api import types as ptypes

USABLE, MISSING, INVALID = 0, 1, 2
# Epoch numbers above this are milliseconds: as seconds they would be after the year 5000.
_EPOCH_MILLISECONDS_FROM = 1e11
_EPOCH = pd.Timestamp(0, tz="UTC")


class RowFields:
    """A table's fields by name.

    A field is the first of its aliases that has a value; for a row without one, the same names are looked up
    inside the row's `data` object (or JSON text): `orchestrator.events` rows keep their payload there.
    """

    def __init__(self, frame: pd.DataFrame) -> None:
        self.frame = frame
        self._payloads: pd.Series | None = None

    def raw(self, *names: str) -> pd.Series:
        columns = [self.frame[name] for name in names if name in self.frame.columns]
        if "data" in self.frame.columns:
            nested = self._nested(names)
            if nested.notna().any():  # else the column keeps its type (and its fast conversions)
                columns.append(nested)
        if not columns:
            return pd.Series(None, index=self.frame.index, dtype=object)
        found = columns[0]
        for column in columns[1:]:
            found = found.where(_has_value(found), column)
        return found

    def _nested(self, names: tuple[str, ...]) -> pd.Series:
        if self._payloads is None:
            self._payloads = self.frame["data"].map(_payload)

        def lookup(payload: dict[str, Any] | None) -> Any:
            for name in names:
                value = (payload or {}).get(name)
                if _is_value(value):
                    return value
            return None

        return self._payloads.map(lookup).astype(object)


def _has_value(column: pd.Series) -> pd.Series:
    """Not null, not NaN, not blank text."""
    if column.dtype == object:
        return column.map(_is_value)
    if ptypes.is_string_dtype(column.dtype):
        return column.notna() & (column.str.strip() != "").fillna(False).astype(bool)
    return column.notna()


def _is_value(value: Any) -> bool:
    if value is None or value is pd.NA or value is pd.NaT:
        return False
    if isinstance(value, float):
        return not math.isnan(value)
    return not (isinstance(value, str) and not value.strip())


def _payload(value: Any) -> dict[str, Any] | None:
    if isinstance(value, dict):
        return value
    if isinstance(value, str) and value.startswith("{"):
        try:
            parsed = json.loads(value)
        except ValueError:
            return None
        return parsed if isinstance(parsed, dict) else None
    return None


def reasons(missing: np.ndarray, invalid: np.ndarray) -> np.ndarray:
    """Per row: USABLE, MISSING or INVALID."""
    return missing.astype(np.int8) * MISSING + invalid.astype(np.int8) * INVALID


def numbers_of(raw: pd.Series) -> tuple[np.ndarray, np.ndarray]:
    """Finite floats (NaN where unusable) and the reason per row (see `reasons`)."""
    missing = raw.isna().to_numpy()
    if missing.all() or ptypes.is_bool_dtype(raw.dtype):
        values = np.full(len(raw), np.nan)
    elif ptypes.is_numeric_dtype(raw.dtype):
        values = raw.to_numpy(dtype=float, na_value=np.nan)
    else:
        values = pd.to_numeric(_scalars(raw), errors="coerce").to_numpy(dtype=float, na_value=np.nan)
    values = np.where(np.isfinite(values), values, np.nan)
    return values, reasons(missing, ~missing & np.isnan(values))


def _scalars(raw: pd.Series) -> pd.Series:
    """Numbers and text as they are; anything else (booleans, objects, lists) as missing."""
    if raw.dtype != object:
        return raw  # a text column
    return raw.map(_numeric_or_text, na_action="ignore")


def _numeric_or_text(value: Any) -> Any:
    # A boolean is not an amount, although Python and pandas would read True as 1.
    if isinstance(value, bool) or not isinstance(value, numbers.Number | str):
        return None
    return value


def texts_of(raw: pd.Series) -> pd.Series:
    """Text values, NA where missing; numbers become their text (an integral float without `.0`)."""
    if raw.isna().all():
        return raw
    if raw.dtype != object and ptypes.is_string_dtype(raw.dtype):
        return raw.where(raw.str.strip() != "")
    if ptypes.is_float_dtype(raw.dtype) or raw.dtype == object:
        text = raw.map(_text, na_action="ignore")
    else:
        text = raw.astype(str).where(raw.notna())
    return text.astype(object).where(text.notna(), None)


def _text(value: Any) -> str | None:
    if isinstance(value, str):
        return value if value.strip() else None
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if isinstance(value, bool | numbers.Number):
        return str(value)
    return None  # an object or a list is not a name


def epoch_seconds_of(raw: pd.Series) -> tuple[np.ndarray, np.ndarray]:
    """Seconds since the Unix epoch (UTC), NaN where unusable, and the reason per row.

    Understood: timestamps (naive ones are UTC), ISO 8601 text, and epoch numbers (or numeric text) in seconds or
    milliseconds.
    """
    missing = raw.isna().to_numpy()
    if missing.all():
        values = np.full(len(raw), np.nan)
    elif ptypes.is_datetime64_any_dtype(raw.dtype):
        values = _seconds(pd.to_datetime(raw, utc=True))
    elif ptypes.is_numeric_dtype(raw.dtype) and not ptypes.is_bool_dtype(raw.dtype):
        values = _epoch_numbers(raw.to_numpy(dtype=float, na_value=np.nan))
    else:
        scalars = raw.map(_time_or_number_or_text, na_action="ignore") if raw.dtype == object else raw
        values = np.full(len(raw), np.nan)
        if raw.dtype == object:  # numbers, text and timestamps mixed (a text column holds only text)
            number = scalars.map(_is_number).to_numpy(dtype=bool)
            values[number] = _epoch_numbers(scalars[number].to_numpy(dtype=float))
        text = np.isnan(values) & ~missing
        if text.any():
            # ISO 8601 first, vectorised; what it cannot read may still be an epoch number written as text.
            parsed = pd.to_datetime(scalars[text].astype(str), utc=True, errors="coerce", format="ISO8601")
            seconds = np.array(_seconds(parsed))
            unparsed = np.isnan(seconds)
            if unparsed.any():
                numbers_as_text = pd.to_numeric(scalars[text][unparsed], errors="coerce")
                seconds[unparsed] = _epoch_numbers(numbers_as_text.to_numpy(dtype=float, na_value=np.nan))
            values[text] = seconds
    values = np.where(np.isfinite(values), values, np.nan)
    return values, reasons(missing, ~missing & np.isnan(values))


def _time_or_number_or_text(value: Any) -> Any:
    # Timestamps go through their ISO text, as text does.
    return value if isinstance(value, dt.date) else _numeric_or_text(value)


def _is_number(value: Any) -> bool:
    return isinstance(value, numbers.Number) and not isinstance(value, bool)


def _seconds(timestamps: pd.Series) -> np.ndarray:
    return ((timestamps - _EPOCH) / pd.Timedelta(seconds=1)).to_numpy(dtype=float, na_value=np.nan)


def _epoch_numbers(values: np.ndarray) -> np.ndarray:
    return np.where(np.abs(values) >= _EPOCH_MILLISECONDS_FROM, values / 1000, values)


def json_value(value: Any) -> Any:
    """A cell as a JSON value: missing as null, an integral float (ids in a column with nulls) as an int."""
    if value is None or (not isinstance(value, dict | list | np.ndarray) and pd.isna(value)):
        return None
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, pd.Timestamp):
        return value.isoformat()
    if isinstance(value, np.ndarray):
        return value.tolist()
    return value
