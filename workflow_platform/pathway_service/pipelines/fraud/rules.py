"""The fraud rules: their settings (the `rules` input), how each one judges a transaction, and the score.

Each rule judges one transaction from the figures the dataflow computed for it (its customer's transactions in
the past hour, the customer's profile, the customer's other transactions in the batch) and returns an outcome:
`{"status": "fired" | "passed", <evidence>}`, or `{"status": "not evaluable", "reason": ...}` when a field it
needs is missing. A rule left out of `rules` is not run at all.

- velocityCheck: the customer's transactions with created_at in [t - 1 h, t] (this one included; those of
  `history` too when the transaction has window features): more than `maxTransactionsPerHour` of them, or
  amounts summing above `amountThreshold`, fire it.
- geographicAnomaly: the great-circle distance from the customer's home (profile home_latitude/longitude) to
  the transaction (latitude/longitude) above `maxDistanceKm` fires it.
- amountAnomaly: |z| above `deviationThreshold` fires it, z = (amount - mean) / std against the profile's
  avg_amount/std_amount when both are there (std > 0), else against the customer's other transactions in the
  batch (at least 2, sample standard deviation > 0).
- timePattern: created_at's hour (UTC) in `unusualHours` fires it.

fraudScore = 1 - (1 - PROFILE_RISK_WEIGHT * risk) * product over fired rules of (1 - weight), in [0, 1]; risk
is the profile's risk_score (read as a percentage when above 1), 0 without a profile.
"""

from __future__ import annotations

import math
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field

PROFILE_RISK_WEIGHT = 0.5
HOUR_SECONDS = 3600.0
EARTH_RADIUS_KM = 6371.0088

NO_CUSTOMER = "no customer_id"
NO_TIME = "no created_at/timestamp"
NO_AMOUNT = "no amount"
NO_LOCATION = "no latitude/longitude"
NO_PROFILE = "no customer profile"
NO_HOME = "the profile has no home_latitude/home_longitude"
NO_BASELINE = (
    "no baseline: the profile has no avg_amount/std_amount (std > 0) and the batch fewer than 2 other "
    "transactions of the customer with distinct amounts"
)

Outcome = dict[str, Any]


class _Rule(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)


class VelocityCheck(_Rule):
    maxTransactionsPerHour: int = Field(ge=1, description="Fires above this many transactions in one hour.")
    amountThreshold: float | None = Field(None, gt=0, description="Fires above this amount in one hour.")
    weight: float = Field(0.5, ge=0, le=1, description="Its part in the fraud score.")


class GeographicAnomaly(_Rule):
    maxDistanceKm: float = Field(gt=0, description="Fires farther than this from the customer's home.")
    weight: float = Field(0.4, ge=0, le=1)


class AmountAnomaly(_Rule):
    deviationThreshold: float = Field(gt=0, description="Fires when |z-score| of the amount is above this.")
    weight: float = Field(0.5, ge=0, le=1)


class TimePattern(_Rule):
    unusualHours: list[Annotated[int, Field(ge=0, le=23)]] = Field(
        description="Hours of the day (UTC, 0-23) that fire it."
    )
    weight: float = Field(0.2, ge=0, le=1)


class Rules(_Rule):
    """The rules to run; the default is the original fraud workflow's rule set."""

    velocityCheck: VelocityCheck | None = None
    geographicAnomaly: GeographicAnomaly | None = None
    amountAnomaly: AmountAnomaly | None = None
    timePattern: TimePattern | None = None


RULE_NAMES = tuple(Rules.model_fields)
DEFAULT_RULES = Rules(
    velocityCheck=VelocityCheck(maxTransactionsPerHour=10, amountThreshold=5000),
    geographicAnomaly=GeographicAnomaly(maxDistanceKm=500),
    amountAnomaly=AmountAnomaly(deviationThreshold=3.0),
    timePattern=TimePattern(unusualHours=[1, 2, 3, 4, 5]),
)


def not_evaluable(reason: str) -> Outcome:
    return {"status": "not evaluable", "reason": reason}


def judged(fired: bool, **evidence: Any) -> Outcome:
    return {"status": "fired" if fired else "passed", **evidence}


def velocity(
    settings: dict[str, Any],
    customer: str | None,
    seconds: float | None,
    transactions_in_hour: int | None,
    amount_in_hour: float | None,
) -> Outcome:
    if customer is None:
        return not_evaluable(NO_CUSTOMER)
    if seconds is None or transactions_in_hour is None:
        return not_evaluable(NO_TIME)
    amount = amount_in_hour or 0.0
    threshold = settings["amountThreshold"]
    fired = transactions_in_hour > settings["maxTransactionsPerHour"] or (
        threshold is not None and amount > threshold
    )
    return judged(fired, transactionsInHour=transactions_in_hour, amountInHour=round(amount, 2))


def geography(
    settings: dict[str, Any],
    latitude: float | None,
    longitude: float | None,
    has_profile: bool,
    home_latitude: float | None,
    home_longitude: float | None,
) -> Outcome:
    if latitude is None or longitude is None:
        return not_evaluable(NO_LOCATION)
    if not has_profile:
        return not_evaluable(NO_PROFILE)
    if home_latitude is None or home_longitude is None:
        return not_evaluable(NO_HOME)
    distance = haversine_km(latitude, longitude, home_latitude, home_longitude)
    return judged(distance > settings["maxDistanceKm"], distanceKm=round(distance, 1))


def haversine_km(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    phi1, phi2 = math.radians(lat1), math.radians(lat2)
    a = (
        math.sin((phi2 - phi1) / 2) ** 2
        + math.cos(phi1) * math.cos(phi2) * math.sin(math.radians(lon2 - lon1) / 2) ** 2
    )
    return 2 * EARTH_RADIUS_KM * math.asin(min(1.0, math.sqrt(a)))


def amount_deviation(
    settings: dict[str, Any],
    amount: float | None,
    profile_mean: float | None,
    profile_std: float | None,
    customer_count: int | None,
    customer_sum: float | None,
    customer_squares: float | None,
) -> Outcome:
    if amount is None:
        return not_evaluable(NO_AMOUNT)
    baseline = _profile_baseline(profile_mean, profile_std) or _batch_baseline(
        amount, customer_count, customer_sum, customer_squares
    )
    if baseline is None:
        return not_evaluable(NO_BASELINE)
    source, mean, std = baseline
    z = (amount - mean) / std
    return judged(
        abs(z) > settings["deviationThreshold"],
        zScore=round(z, 3),
        baseline=source,
        mean=round(mean, 2),
        std=round(std, 2),
    )


def _profile_baseline(mean: float | None, std: float | None) -> tuple[str, float, float] | None:
    if mean is None or std is None or std <= 0:
        return None
    return "profile", mean, std


def _batch_baseline(
    amount: float, count: int | None, total: float | None, squares: float | None
) -> tuple[str, float, float] | None:
    """Mean and sample std of the customer's other transactions, from the customer's sums minus this one."""
    if count is None or total is None or squares is None or count - 1 < 2:
        return None
    others = count - 1
    mean = (total - amount) / others
    variance = (squares - amount * amount - others * mean * mean) / (others - 1)
    # Sums of squares lose digits; a variance within rounding noise of 0 is 0.
    if variance <= 1e-9 * max(1.0, mean * mean):
        return None
    return "batch", mean, math.sqrt(variance)


def time_of_day(settings: dict[str, Any], seconds: float | None) -> Outcome:
    if seconds is None:
        return not_evaluable(NO_TIME)
    hour = int(seconds // HOUR_SECONDS) % 24
    return judged(hour in settings["unusualHours"], hourUtc=hour)


def profile_risk(risk_score: float | None) -> float:
    """A profile's risk_score as a fraction: values above 1 are percentages."""
    if risk_score is None or math.isnan(risk_score):
        return 0.0
    risk = risk_score / 100 if risk_score > 1 else risk_score
    return min(1.0, max(0.0, risk))
