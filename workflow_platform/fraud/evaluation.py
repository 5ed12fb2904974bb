"""The handbook's assessment protocol (chapters 3.5, 4.3): train / delay / test split and card precision@k.

`demo_data.fraud_handbook.evaluate_handbook()` reproduces the baseline experiment: features on the whole simulated dataset, a model
trained on 2018-07-25..07-31, a week of delay (08-01..08-07) whose labels are not yet known, and a test week
(08-08..08-14) from which each day drops the cards already known to be compromised (frauds in the training
week, plus frauds up to test day - 8). Each model is scored by AUC ROC, average precision and card
precision@100, next to the figures the handbook publishes.
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

# Handbook, chapter 3.5 "Baseline fraud detection system", test-week performance.
HANDBOOK_FIGURES: dict[str, dict[str, float]] = {
    "logistic_regression": {"auc_roc": 0.871, "average_precision": 0.606, "card_precision_at_100": 0.291},
    "random_forest": {"auc_roc": 0.867, "average_precision": 0.658, "card_precision_at_100": 0.287},
    "xgboost": {"auc_roc": 0.862, "average_precision": 0.639, "card_precision_at_100": 0.273},
}
# The handbook's best results after model selection (chapter 5), the bar to clear.
HANDBOOK_BEST_TUNED = {"auc_roc": 0.875, "average_precision": 0.694, "card_precision_at_100": 0.304}
# Acceptance: the best model is at least as good as the handbook's best baseline (its random forest).

START_TRAINING = dt.datetime(2018, 7, 25)
DELTA_TRAIN = DELTA_DELAY = DELTA_TEST = 7


def train_delay_test_split(
    transactions: pd.DataFrame,
    start_training: dt.datetime = START_TRAINING,
    delta_train: int = DELTA_TRAIN,
    delta_delay: int = DELTA_DELAY,
    delta_test: int = DELTA_TEST,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The handbook's `get_train_test_set`: training rows, and test rows without the known compromised cards.

    A card is known compromised on test day t if it had a fraud in the training window or on a day up to
    t - delta_delay - 1 (the labels of the last delay days are not known yet).
    """
    when = transactions["TX_DATETIME"]
    train = transactions[(when >= start_training) & (when < start_training + dt.timedelta(days=delta_train))]
    known = set(train.loc[train["TX_FRAUD"] == 1, "CUSTOMER_ID"])
    first_day = int(train["TX_TIME_DAYS"].min())
    days = transactions["TX_TIME_DAYS"]
    test_days = []
    for day in range(delta_test):
        delay_day = transactions[days == first_day + delta_train + day - 1]
        known |= set(delay_day.loc[delay_day["TX_FRAUD"] == 1, "CUSTOMER_ID"])
        test_day = transactions[days == first_day + delta_train + delta_delay + day]
        test_days.append(test_day[~test_day["CUSTOMER_ID"].isin(known)])
    test = pd.concat(test_days)
    return train.sort_values("TRANSACTION_ID"), test.sort_values("TRANSACTION_ID")


def card_precision_top_k_day(day: pd.DataFrame, top_k: int) -> tuple[list, float]:
    """Cards of one day ranked by their highest score; (the frauded ones among the top k, their share of k).

    `day` has CUSTOMER_ID, TX_FRAUD and predictions. Equal scores keep CUSTOMER_ID order (a stable sort; the
    handbook's quicksort leaves such ties in an unspecified order).
    """
    cards = day.groupby("CUSTOMER_ID")[["predictions", "TX_FRAUD"]].max()
    cards = cards.sort_values("predictions", ascending=False, kind="stable").head(top_k)
    detected = list(cards.index[cards["TX_FRAUD"] == 1])
    return detected, len(detected) / top_k


def card_precision_top_k(
    predictions: pd.DataFrame, top_k: int, remove_detected_frauded_cards: bool = True
) -> tuple[list[int], list[float], float]:
    """Card precision@k per day (cards detected on an earlier day removed) and its mean over the days.

    `predictions` has TX_TIME_DAYS, CUSTOMER_ID, TX_FRAUD and predictions. Returns the number of frauded cards
    per day, the precision per day, and the mean.
    """
    detected_cards: set = set()
    frauded_per_day: list[int] = []
    precision_per_day: list[float] = []
    for day in sorted(predictions["TX_TIME_DAYS"].unique()):
        rows = predictions[predictions["TX_TIME_DAYS"] == day]
        rows = rows[~rows["CUSTOMER_ID"].isin(detected_cards)]
        frauded_per_day.append(int(rows.loc[rows["TX_FRAUD"] == 1, "CUSTOMER_ID"].nunique()))
        detected, precision = card_precision_top_k_day(rows, top_k)
        precision_per_day.append(precision)
        if remove_detected_frauded_cards:
            detected_cards.update(detected)
    mean = float(np.mean(precision_per_day)) if precision_per_day else float("nan")
    return frauded_per_day, precision_per_day, mean


def performance(predictions: pd.DataFrame, top_k: int = 100) -> dict[str, float]:
    """AUC ROC, average precision and card precision@k of `predictions` (TX_FRAUD vs predictions)."""
    from sklearn.metrics import average_precision_score, roc_auc_score

    return {
        "auc_roc": float(roc_auc_score(predictions["TX_FRAUD"], predictions["predictions"])),
        "average_precision": float(
            average_precision_score(predictions["TX_FRAUD"], predictions["predictions"])
        ),
        f"card_precision_at_{top_k}": card_precision_top_k(predictions, top_k)[2],
    }


@dataclass
class ModelResult:
    name: str
    metrics: dict[str, float]
    handbook: dict[str, float] | None
    train_seconds: float
    model: object = field(repr=False, default=None)  # the fitted FraudModel


@dataclass
class HandbookEvaluation:
    results: list[ModelResult]
    n_train: int
    n_test: int
    n_train_frauds: int
    n_test_frauds: int
    simulation_seconds: float
    features_seconds: float

    def best(self) -> ModelResult:
        return max(self.results, key=lambda r: (r.metrics["average_precision"], r.metrics["auc_roc"]))

    def meets_acceptance(self) -> bool:
        """The best model is at least as good as the handbook's best baseline on every metric."""
        best = self.best().metrics
        return (
            best["auc_roc"] >= 0.867
            and best["average_precision"] >= 0.658
            and best["card_precision_at_100"] >= 0.287
        )

    def to_dict(self) -> dict:
        return {
            "protocol": {
                "train": f"{START_TRAINING:%Y-%m-%d}..+{DELTA_TRAIN}d",
                "delay_days": DELTA_DELAY,
                "test_days": DELTA_TEST,
                "n_train": self.n_train,
                "n_train_frauds": self.n_train_frauds,
                "n_test": self.n_test,
                "n_test_frauds": self.n_test_frauds,
            },
            "models": {
                r.name: {
                    "ours": {k: round(v, 4) for k, v in r.metrics.items()},
                    "handbook": r.handbook,
                    "train_seconds": round(r.train_seconds, 2),
                }
                for r in self.results
            },
            "handbook_best_tuned": HANDBOOK_BEST_TUNED,
            "best": self.best().name,
            "meets_acceptance": self.meets_acceptance(),
            "simulation_seconds": round(self.simulation_seconds, 2),
            "features_seconds": round(self.features_seconds, 2),
        }

    def table(self) -> str:
        """The figures as a text table: ours next to the handbook's."""
        header = f"{'model':<24}{'AUC ROC':>16}{'Avg precision':>18}{'Card P@100':>16}"
        lines = [header, f"{'':<24}{'ours / book':>16}{'ours / book':>18}{'ours / book':>16}"]
        for r in self.results:
            cells = []
            for metric, width in (("auc_roc", 16), ("average_precision", 18), ("card_precision_at_100", 16)):
                book = f"{r.handbook[metric]:.3f}" if r.handbook else "  -  "
                cells.append(f"{r.metrics[metric]:.3f} / {book}".rjust(width))
            lines.append(f"{r.name:<24}{''.join(cells)}")
        tuned = HANDBOOK_BEST_TUNED
        lines.append(
            f"{'(handbook best tuned)':<24}{tuned['auc_roc']:>16.3f}{tuned['average_precision']:>18.3f}"
            f"{tuned['card_precision_at_100']:>16.3f}"
        )
        lines.append(
            f"train {self.n_train} tx ({self.n_train_frauds} frauds), test {self.n_test} tx "
            f"({self.n_test_frauds} frauds); best: {self.best().name}"
        )
        return "\n".join(lines)


def evaluate_models(
    features: pd.DataFrame,
    models: Sequence[str],
    start_training: dt.datetime = START_TRAINING,
    delta_train: int = DELTA_TRAIN,
    delta_delay: int = DELTA_DELAY,
    delta_test: int = DELTA_TEST,
) -> tuple[list[ModelResult], pd.DataFrame, pd.DataFrame]:
    """Fit each model on the training window of `features` (transform_features output, with TX_TIME_DAYS) and
    measure it on the test window; the results (each with its fitted model and metrics), train and test."""
    from workflow_platform.fraud.model import fit_model, score

    train, test = train_delay_test_split(features, start_training, delta_train, delta_delay, delta_test)
    results = []
    for name in models:
        started = time.perf_counter()
        model = fit_model(name, train)
        trained = time.perf_counter() - started
        predictions = test[["TX_TIME_DAYS", "CUSTOMER_ID", "TX_FRAUD"]].copy()
        predictions["predictions"] = score(model, test)
        model.metrics = performance(predictions)
        results.append(ModelResult(name, model.metrics, HANDBOOK_FIGURES.get(name), trained, model))
    return results, train, test
