"""A gradient-boosting model's compiled trees (`fraud.compiled`, what the fraud stream scores with): the same
probabilities as scikit-learn's, built once per version, none where they cannot be had, and how the stream
(`LatestModel`) switches to them, for the model it starts with and for one promoted later."""

from __future__ import annotations

import logging
import time
import uuid
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from workflow_platform.demo_data.fraud_simulator import SimulationConfig, simulate
from workflow_platform.fraud.compiled import compiled_predictor, compiler
from workflow_platform.fraud.features import transform_features
from workflow_platform.fraud.model import FraudModel, fit_model, save_model
from workflow_platform.fraud_stream import latest_model
from workflow_platform.fraud_stream.latest_model import LatestModel

from .conftest import require_tool


@pytest.fixture(scope="module")
def featured() -> pd.DataFrame:
    return transform_features(
        simulate(SimulationConfig(n_customers=300, n_terminals=600, nb_days=40)).transactions
    )


def fitted(name: str, featured: pd.DataFrame, version: str) -> FraudModel:
    model = fit_model(name, featured)
    model.version = version
    return model


def test_compiled_trees_give_scikit_learns_probabilities_and_are_built_once(
    featured: pd.DataFrame, tmp_path: Path
) -> None:
    require_tool("gcc", "cc")
    model = fitted("hist_gradient_boosting", featured, "2026-11-30T00-00-00Z-test")
    predict = compiled_predictor(model, tmp_path / "models")
    assert predict is not None
    rows = featured[model.features]
    expected = model.estimator.predict_proba(rows)[:, 1]
    np.testing.assert_allclose(predict(rows), expected, rtol=0, atol=1e-12)
    for batch in np.array_split(np.arange(len(rows)), 7):  # the stream's way: a batch at a time
        np.testing.assert_allclose(predict(rows.iloc[batch]), expected[batch], rtol=0, atol=1e-12)
    (library,) = (tmp_path / "models").glob("*.so")
    built = library.stat().st_mtime_ns
    assert compiled_predictor(model, tmp_path / "models") is not None
    assert library.stat().st_mtime_ns == built  # the version's library is reused, not built again
    assert [p.name for p in (tmp_path / "models").iterdir()] == [library.name]  # no scratch left behind


def test_other_models_and_machines_without_a_compiler_keep_scikit_learn(
    featured: pd.DataFrame, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    regression = fitted("logistic_regression", featured, "v-regression")
    assert compiled_predictor(regression, tmp_path) is None
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    monkeypatch.delenv("CC", raising=False)
    assert compiler() is None
    assert compiled_predictor(fitted("hist_gradient_boosting", featured, "v-gbm"), tmp_path) is None
    assert not list(tmp_path.iterdir())


def test_the_stream_scores_each_promoted_version_through_its_compiled_trees(
    featured: pd.DataFrame, tmp_path: Path, s3, caplog: pytest.LogCaptureFixture
) -> None:
    """LatestModel, on the session's object store: the model it starts with is compiled before its first batch,
    a version promoted later scores through scikit-learn until its trees are built, then through them."""
    require_tool("gcc", "cc")
    bucket = f"compiled-{uuid.uuid4().hex[:8]}"
    s3.make_bucket(bucket)
    rows = featured.head(2000)
    first = fit_model("hist_gradient_boosting", featured)
    save_model(first, s3, bucket)
    caplog.set_level(logging.INFO, logger="workflow_platform.fraud_stream.latest_model")
    unfinished = tmp_path / "models" / "building-x1y2" / "main.c"  # what a pipeline killed mid-build left
    unfinished.parent.mkdir(parents=True)
    unfinished.write_text("int main;")
    latest = LatestModel(s3, bucket, check_seconds=0, compiled_dir=tmp_path / "models")
    assert not unfinished.parent.exists()
    scores, version = latest.score(rows)
    assert version == first.version
    np.testing.assert_allclose(scores, first.estimator.predict_proba(rows[first.features])[:, 1], atol=1e-12)
    assert f"model {first.version} now scores through its compiled trees" in caplog.text

    second = fit_model("hist_gradient_boosting", featured.iloc[: len(featured) // 2])
    save_model(second, s3, bucket)
    expected = second.estimator.predict_proba(rows[second.features])[:, 1]
    deadline = time.monotonic() + 120
    while f"model {second.version} now scores through its compiled trees" not in caplog.text:
        assert time.monotonic() < deadline, "the promoted version's trees are not compiled within 120 s"
        scores, version = latest.score(rows)  # scikit-learn's until the trees are built, then theirs
        assert version == second.version
        np.testing.assert_allclose(scores, expected, rtol=0, atol=1e-12)
        time.sleep(0.2)
    assert len(list((tmp_path / "models").glob("*.so"))) == 2


def test_compiled_trees_that_disagree_with_scikit_learn_are_not_used(
    featured: pd.DataFrame,
    tmp_path: Path,
    s3,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    bucket = f"compiled-{uuid.uuid4().hex[:8]}"
    s3.make_bucket(bucket)
    model = fit_model("hist_gradient_boosting", featured)
    save_model(model, s3, bucket)
    # A library built wrong (a compiler bug, a changed Treelite): its first batch is checked, and it is dropped.
    monkeypatch.setattr(
        latest_model, "compiled_predictor", lambda model, directory: lambda frame: frame.iloc[:, 0]
    )
    latest = LatestModel(s3, bucket, check_seconds=3600, compiled_dir=tmp_path)
    rows = featured.head(500)
    expected = model.estimator.predict_proba(rows[model.features])[:, 1]
    for _ in range(2):
        scores, _version = latest.score(rows)
        np.testing.assert_allclose(scores, expected, rtol=0, atol=1e-12)
    assert f"compiled model {model.version} differs from scikit-learn's: not used" in caplog.text
