"""Fraud detection that really detects: the handbook's transaction simulator, features, models and evaluation.

Le Borgne et al., "Reproducible Machine Learning for Credit Card Fraud Detection - Practical Handbook":
`simulator` reproduces its simulated dataset draw for draw, `features` its baseline feature transformation,
`model` trains, stores and loads the models, `evaluation` runs its train/delay/test protocol, `load` puts the
transactions into PostgreSQL and onto NATS JetStream, and `cli` holds the `wfp seed transactions` and
`wfp eval fraud` commands.

Nothing here is imported by the Dagster code location unless a workflow asks for it: the modules import
numpy/pandas at top level and scikit-learn, psycopg2, minio and nats-py only inside the functions using them.
"""

# Model candidates (`model.CANDIDATES`) and where models are stored: here, so that the `fraud` plugin can
# validate workflows without importing numpy, pandas and scikit-learn into the code location.
MODEL_NAMES = ("logistic_regression", "random_forest", "xgboost", "hist_gradient_boosting", "ensemble")
MODEL_PREFIX = "models/fraud"
LATEST_KEY = f"{MODEL_PREFIX}/latest.json"
