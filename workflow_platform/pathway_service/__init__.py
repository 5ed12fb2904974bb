"""The Pathway ETL service: one long-running Pathway application serving pipelines over HTTP.

Run it with `python -m workflow_platform.pathway_service`; start it from Python with `launcher`. This package and
its `launcher` stay importable without `pathway` (a 1 s, 300 MB import): only `app` and the pipelines' `build`
functions import the engine, and only inside the service process.
"""
