"""A gradient-boosting model's trees compiled to machine code: the same probabilities as scikit-learn's, in a third
to a half of the time its predictor takes (the stream's scoring, bench/fraud_stream.py).

Treelite reads the fitted trees of a `hist_gradient_boosting` model; TL2cgen writes them as C and builds a
shared library with the machine's C compiler (a few seconds, once per model: the library is kept in `directory`,
which must be the caller's own, as loading it runs its code). The model's other steps (derived
features, scaler) stay scikit-learn's. Other model kinds, and machines without a C compiler, have none:
`compiled_predictor` returns None and the caller keeps `predict_proba`.
"""

from __future__ import annotations

import hashlib
import logging
import os
import pickle
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd

from workflow_platform.fraud.model import FraudModel

log = logging.getLogger(__name__)

Predict = Callable[[pd.DataFrame], np.ndarray]  # the model's features -> the fraud probability of each row
_BUILDING = "building-"  # the prefix of a build's scratch directory, beside the libraries


def compiler() -> str | None:
    """The C compiler TL2cgen would use (CC, else cc or gcc on the PATH), None if there is none."""
    return next(filter(None, (shutil.which(name) for name in (os.environ.get("CC", ""), "cc", "gcc"))), None)


def compiled_predictor(model: FraudModel, directory: Path) -> Predict | None:
    """The model's probabilities through its compiled trees; None if the model is not a binary
    HistGradientBoostingClassifier pipeline or the machine has no C compiler."""
    from sklearn.ensemble import HistGradientBoostingClassifier
    from sklearn.pipeline import Pipeline

    estimator = model.estimator
    if not (
        isinstance(estimator, Pipeline)
        and isinstance(estimator[-1], HistGradientBoostingClassifier)
        and len(estimator[-1].classes_) == 2
    ):
        return None
    cc = compiler()
    if cc is None:
        log.info("no C compiler: model %s scores through scikit-learn", model.version)
        return None
    import tl2cgen

    # Named after the trees themselves, not the version: a re-executed training step may store other trees
    # under the version it stored before.
    library = directory / f"{hashlib.sha256(pickle.dumps(estimator[-1])).hexdigest()[:32]}.so"
    if not library.exists():
        _build(estimator[-1], library, cc)
    predictor = tl2cgen.Predictor(str(library), nthread=1)
    steps = estimator[:-1]

    def predict(features: pd.DataFrame) -> np.ndarray:
        inputs = np.ascontiguousarray(steps.transform(features), dtype=np.float64)
        out = np.asarray(predictor.predict(tl2cgen.DMatrix(inputs, dtype="float64")))
        return out.reshape(len(inputs), -1)[:, -1]  # the positive class (sigmoid applied)

    return predict


def remove_unfinished(directory: Path) -> None:
    """Remove the scratch of builds cut short (a killed process): before any build in `directory` starts."""
    for scratch in directory.glob(f"{_BUILDING}*"):
        shutil.rmtree(scratch, ignore_errors=True)


def _build(classifier: object, library: Path, cc: str) -> None:
    """Compile into a temporary name, then rename: a build cut short never leaves a library to load."""
    import tl2cgen
    import treelite.sklearn

    library.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    trees = treelite.sklearn.import_model(classifier)
    with tempfile.TemporaryDirectory(prefix=_BUILDING, dir=library.parent) as scratch:
        built = Path(scratch) / library.name
        tl2cgen.export_lib(trees, toolchain=cc, libpath=str(built), params={"parallel_comp": 8}, nthread=1)
        os.replace(built, library)
