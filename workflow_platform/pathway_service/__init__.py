"""The Pathway ETL service: one long-running Pathway application serving pipelines over HTTP.

Run it with `python -m workflow_platform.pathway_service`; the embedded stack starts it with
`stack.pathway_launcher`. This package stays importable without `pathway` (a 1 s, 300 MB import): only `app`
(with `http_server` and `connector`) and the pipelines' `build` functions import the engine, and only inside
the service process.
"""
