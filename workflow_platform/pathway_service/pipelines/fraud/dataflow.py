"""fraud-detection-pipeline as a Pathway dataflow: every transaction featured, scored, judged, summarised.

    transactions ─┬─► per customer: count, sum, sum of squares (groupby) ────────┐
                  ├─► per transaction: the customer's past hour (interval join) ─┤
    profiles ─────┼─► the customer's profile (join) ─────────────────────────────┼─► one row per transaction
    history ──────┴─► window features (windows.py) ─► model score (per request) ─┘
        ─► rules (one UDF each) ─► rule score (an expression over the rules fired and the profile's risk)
        ─► risk score: the model's, else the rules' ─► per request: summary, alerts, listing in input order

The rules' logic lives in `rules.py`, the features in `windows.py`, the model in `scoring.py`.
"""

import numpy as np
import pathway as pw

from ...staging import StagedRequest
from ..request_rows import request_rows
from . import rules
from .history import History, feature_input, histories
from .report import analysis_document, transaction_document
from .rows import profiles, transactions
from .scoring import describe, model_scores
from .windows import FEATURES, window_features

RULE_COLUMNS = dict(zip(rules.RULE_NAMES, ("velocity", "geography", "deviation", "time_of_day"), strict=True))


# No `from __future__ import annotations` here: Pathway reads the UDFs' annotations as types.
# Not deterministic: Pathway keeps the rows to retract them later instead of computing them again.
@pw.udf
def load_transactions(
    request: pw.PyObjectWrapper[StagedRequest],
) -> list[tuple[int, pw.Json, str | None, float | None, float | None, float | None, float | None]]:
    return [
        (position, pw.Json(transaction_id), *rest)
        for position, transaction_id, *rest in transactions(request.value.tables["transactions"])
    ]


@pw.udf
def load_profiles(
    request: pw.PyObjectWrapper[StagedRequest],
) -> list[tuple[str, float, float | None, float | None, float | None, float | None, float | None]]:
    return profiles(request.value.tables["customerProfiles"])


@pw.udf
def load_histories(request: pw.PyObjectWrapper[StagedRequest]) -> list[History]:
    """The card and terminal histories of the transactions (positions first) and of their history."""
    staged = request.value
    batch = feature_input(staged.tables["transactions"])
    earlier = feature_input(staged.tables["history"], frozenset(batch.ids) - {None})
    staged.derived["featured"] = batch
    return histories(batch.then(earlier))


@pw.udf
def model_rows(
    request: pw.PyObjectWrapper[StagedRequest], features: np.ndarray
) -> list[tuple[int, float | None, tuple, int, float]]:
    """Per featured transaction: position in the input, model score (None without a model), the 15 features,
    and the card's transactions and amount in the past hour (history included)."""
    staged = request.value
    batch = staged.derived["featured"]
    mine = features[: len(batch), : len(FEATURES)]
    past_hour = features[: len(batch), len(FEATURES) :]
    model = staged.derived.get("model")
    scores = model_scores(model, mine).tolist() if model is not None else [None] * len(mine)
    return [
        (int(row), score, tuple(values), int(hour[0]), float(hour[1]))
        for row, score, values, hour in zip(
            batch.source_rows.tolist(), scores, mine.tolist(), past_hour.tolist(), strict=True
        )
    ]


@pw.udf
def model_of(request: pw.PyObjectWrapper[StagedRequest]) -> pw.Json:
    return pw.Json(describe(request.value.derived.get("model")))


# The rules as UDFs: JSON null when the request does not configure the rule (its settings are null).
@pw.udf(deterministic=True)
def velocity(
    settings: pw.Json,
    customer: str | None,
    seconds: float | None,
    in_hour: int | None,
    amount_in_hour: float | None,
) -> pw.Json:
    if settings.value is None:
        return pw.Json(None)
    return pw.Json(rules.velocity(settings.value, customer, seconds, in_hour, amount_in_hour))


@pw.udf(deterministic=True)
def geography(
    settings: pw.Json,
    latitude: float | None,
    longitude: float | None,
    has_profile: bool,
    home_latitude: float | None,
    home_longitude: float | None,
) -> pw.Json:
    if settings.value is None:
        return pw.Json(None)
    outcome = rules.geography(settings.value, latitude, longitude, has_profile, home_latitude, home_longitude)
    return pw.Json(outcome)


@pw.udf(deterministic=True)
def deviation(
    settings: pw.Json,
    amount: float | None,
    mean: float | None,
    std: float | None,
    transactions: int | None,
    total: float | None,
    squares: float | None,
) -> pw.Json:
    if settings.value is None:
        return pw.Json(None)
    return pw.Json(rules.amount_deviation(settings.value, amount, mean, std, transactions, total, squares))


@pw.udf(deterministic=True)
def time_of_day(settings: pw.Json, seconds: float | None) -> pw.Json:
    if settings.value is None:
        return pw.Json(None)
    return pw.Json(rules.time_of_day(settings.value, seconds))


@pw.udf(deterministic=True)
def transaction_of(
    transaction_id: pw.Json,
    customer: str | None,
    amount: float | None,
    seconds: float | None,
    risk_score: float | None,
    fraud_score: float,
    model_score: float | None,
    features: tuple | None,
    threshold: float,
    velocity: pw.Json,
    geography: pw.Json,
    deviation: pw.Json,
    time_of_day: pw.Json,
) -> pw.Json:
    outcomes = [velocity, geography, deviation, time_of_day]
    document = transaction_document(
        transaction_id.value,
        customer,
        amount,
        seconds,
        risk_score,
        fraud_score,
        {rule: outcome.value for rule, outcome in zip(rules.RULE_NAMES, outcomes, strict=True)},
        model_score,
        features,
        threshold,
    )
    return pw.Json(document)


@pw.udf(deterministic=True)
def analysis_of(
    request: pw.Json,
    model: pw.Json,
    listing: tuple | None,
    with_profile: int | None,
    fired: tuple | None,
    not_evaluable: tuple | None,
    average_score: float | None,
    max_score: float | None,
) -> pw.Json:
    empty = (0,) * len(rules.RULE_NAMES)
    document = analysis_document(
        request.value,
        model.value,
        [entry.value for _, entry in listing or ()],
        with_profile or 0,
        fired or empty,
        not_evaluable or empty,
        average_score,
        max_score,
    )
    return pw.Json(document)


def build(requests: pw.Table) -> pw.Table:
    txns = _transactions(requests)
    featured = _with_profiles_and_sums(txns, _profiles(requests), _customer_sums(txns))
    featured = _with_past_hour(featured, txns)
    featured = _with_model_scores(featured, requests)
    featured = _with_request_settings(featured, requests)
    return _answers(requests, _summary(_scored(_judged(featured))))


def _transactions(requests: pw.Table) -> pw.Table:
    """One row per transaction of each request (rows.Transaction's fields)."""
    fields = ("position", "transaction_id", "customer", "amount", "seconds", "latitude", "longitude")
    return request_rows(requests, load_transactions, fields)


def _profiles(requests: pw.Table) -> pw.Table:
    """One row per customer: the loader keeps each customer's first profile."""
    fields = ("customer", "risk", "risk_score", "mean", "std", "home_latitude", "home_longitude")
    return request_rows(requests, load_profiles, fields)


def _customer_sums(txns: pw.Table) -> pw.Table:
    """Per request and customer: the batch's count, sum and sum of squares of amounts (the amount rule's)."""
    return (
        txns.filter(pw.this.customer.is_not_none() & pw.this.amount.is_not_none())
        .groupby(pw.this.query_id, pw.this.customer)
        .reduce(
            pw.this.query_id,
            pw.this.customer,
            transactions=pw.reducers.count(),
            total=pw.reducers.sum(pw.unwrap(pw.this.amount)),
            squares=pw.reducers.sum(pw.unwrap(pw.this.amount) * pw.unwrap(pw.this.amount)),
        )
    )


def _with_profiles_and_sums(txns: pw.Table, customer_profiles: pw.Table, customer_sums: pw.Table) -> pw.Table:
    same_customer = (pw.left.query_id == pw.right.query_id, pw.left.customer == pw.right.customer)
    return (
        txns.join_left(customer_profiles, *same_customer, id=pw.left.id)
        .select(
            *pw.left,
            has_profile=pw.right.customer.is_not_none(),
            risk=pw.coalesce(pw.right.risk, 0.0),
            risk_score=pw.right.risk_score,
            mean=pw.right.mean,
            std=pw.right.std,
            home_latitude=pw.right.home_latitude,
            home_longitude=pw.right.home_longitude,
        )
        .join_left(customer_sums, *same_customer, id=pw.left.id)
        .select(*pw.left, transactions=pw.right.transactions, total=pw.right.total, squares=pw.right.squares)
    )


def _with_past_hour(joined: pw.Table, txns: pw.Table) -> pw.Table:
    """The card's past hour in the batch alone (see `_with_model_scores` for the history's)."""
    return joined.join_left(_past_hour(txns), pw.left.id == pw.right.id, id=pw.left.id).select(
        *pw.left, in_hour=pw.right.transactions, amount_in_hour=pw.right.amount
    )


def _with_model_scores(joined: pw.Table, requests: pw.Table) -> pw.Table:
    return joined.join_left(
        _model_scores(requests),
        pw.left.query_id == pw.right.query_id,
        pw.left.position == pw.right.position,
        id=pw.left.id,
    ).select(
        *pw.left.without("in_hour", "amount_in_hour"),
        model_score=pw.right.model_score,
        window_features=pw.right.features,
        # With the card's history at hand the velocity rule counts it too, else the batch alone.
        in_hour=pw.coalesce(pw.right.in_hour, pw.left.in_hour),
        amount_in_hour=pw.coalesce(pw.right.amount_in_hour, pw.left.amount_in_hour),
    )


def _with_request_settings(joined: pw.Table, requests: pw.Table) -> pw.Table:
    return joined.join(requests, pw.left.query_id == pw.right.id, id=pw.left.id).select(
        *pw.left,
        rules=pw.right.input["rules"],
        threshold=pw.right.input["alertThreshold"].as_float(unwrap=True),
    )


def _judged(features: pw.Table) -> pw.Table:
    """Each transaction with what the answer needs and every rule's outcome."""
    return features.select(
        pw.this.query_id,
        pw.this.position,
        pw.this.has_profile,
        pw.this.risk,
        pw.this.transaction_id,
        pw.this.customer,
        pw.this.amount,
        pw.this.seconds,
        pw.this.risk_score,
        pw.this.rules,
        pw.this.model_score,
        pw.this.window_features,
        pw.this.threshold,
        velocity=velocity(
            pw.this.rules["velocityCheck"],
            pw.this.customer,
            pw.this.seconds,
            pw.this.in_hour,
            pw.this.amount_in_hour,
        ),
        geography=geography(
            pw.this.rules["geographicAnomaly"],
            pw.this.latitude,
            pw.this.longitude,
            pw.this.has_profile,
            pw.this.home_latitude,
            pw.this.home_longitude,
        ),
        deviation=deviation(
            pw.this.rules["amountAnomaly"],
            pw.this.amount,
            pw.this.mean,
            pw.this.std,
            pw.this.transactions,
            pw.this.total,
            pw.this.squares,
        ),
        time_of_day=time_of_day(pw.this.rules["timePattern"], pw.this.seconds),
    )


def _scored(judged: pw.Table) -> pw.Table:
    """The rule score, then each transaction's answer document."""
    return judged.with_columns(fraud_score=_fraud_score(judged)).with_columns(
        document=transaction_of(
            pw.this.transaction_id,
            pw.this.customer,
            pw.this.amount,
            pw.this.seconds,
            pw.this.risk_score,
            pw.this.fraud_score,
            pw.this.model_score,
            pw.this.window_features,
            pw.this.threshold,
            *(pw.this[column] for column in RULE_COLUMNS.values()),
        )
    )


def _summary(scored: pw.Table) -> pw.Table:
    """Per request: the documents in input order, the rules' counts and the deciding scores."""
    return scored.groupby(pw.this.query_id).reduce(
        pw.this.query_id,
        listing=pw.reducers.sorted_tuple(pw.make_tuple(pw.this.position, pw.this.document)),
        with_profile=pw.reducers.sum(pw.cast(int, pw.this.has_profile)),
        fired=pw.make_tuple(*(pw.reducers.sum(_is(pw.this[c], "fired")) for c in RULE_COLUMNS.values())),
        not_evaluable=pw.make_tuple(
            *(pw.reducers.sum(_is(pw.this[c], "not evaluable")) for c in RULE_COLUMNS.values())
        ),
        # The score that decides: the model's where there is one, else the rules'.
        average_score=pw.reducers.avg(pw.coalesce(pw.this.model_score, pw.this.fraud_score)),
        max_score=pw.reducers.max(pw.coalesce(pw.this.model_score, pw.this.fraud_score)),
    )


def _answers(requests: pw.Table, summary: pw.Table) -> pw.Table:
    # A left join answers requests without transactions too; the answer keeps the request's id, which is how
    # the service (connector.py) matches it to the waiting HTTP call.
    return requests.join_left(summary, pw.left.id == pw.right.query_id, id=pw.left.id).select(
        result=analysis_of(
            pw.left.input,
            model_of(pw.left.request),
            pw.right.listing,
            pw.right.with_profile,
            pw.right.fired,
            pw.right.not_evaluable,
            pw.right.average_score,
            pw.right.max_score,
        )
    )


def _model_scores(requests: pw.Table) -> pw.Table:
    """Per featured transaction: query_id, position (in the input), model_score (None without a model), features."""
    features = window_features(requests.select(histories=load_histories(pw.this.request)))
    return (
        requests.join(features, pw.left.id == pw.right.query_id)
        .select(query_id=pw.left.id, row=model_rows(pw.left.request, pw.right.features))
        .flatten(pw.this.row)
        .select(
            pw.this.query_id,
            position=pw.this.row[0],
            model_score=pw.this.row[1],
            features=pw.this.row[2],
            in_hour=pw.this.row[3],
            amount_in_hour=pw.this.row[4],
        )
    )


def _past_hour(txns: pw.Table) -> pw.Table:
    """Per transaction with a customer and a time: the customer's transactions in [t - 1 h, t], and their sum."""
    timed = txns.filter(pw.this.customer.is_not_none() & pw.this.seconds.is_not_none()).select(
        pw.this.query_id,
        customer=pw.unwrap(pw.this.customer),
        seconds=pw.unwrap(pw.this.seconds),
        amount=pw.coalesce(pw.this.amount, 0.0),
    )
    earlier = timed.copy()
    window = pw.temporal.interval_join(
        timed,
        earlier,
        timed.seconds,
        earlier.seconds,
        pw.temporal.interval(-rules.HOUR_SECONDS, 0.0),
        timed.query_id == earlier.query_id,
        timed.customer == earlier.customer,
    ).select(transaction=pw.left.id, amount=pw.right.amount)
    return window.groupby(id=pw.this.transaction).reduce(
        transactions=pw.reducers.count(), amount=pw.reducers.sum(pw.this.amount)
    )


def _is(outcome: pw.ColumnExpression, status: str) -> pw.ColumnExpression:
    return pw.if_else(pw.coalesce(outcome["status"].as_str(), "") == status, 1, 0)


def _fraud_score(judged: pw.Table) -> pw.ColumnExpression:
    """1 - (1 - w * risk) * product over fired rules of (1 - weight): see `rules`."""
    kept = 1.0 - rules.PROFILE_RISK_WEIGHT * judged.risk
    for rule, column in RULE_COLUMNS.items():
        weight = pw.coalesce(judged.rules[rule]["weight"].as_float(), 0.0)
        kept = kept * pw.if_else(_is(judged[column], "fired") == 1, 1.0 - weight, 1.0)
    return 1.0 - kept
