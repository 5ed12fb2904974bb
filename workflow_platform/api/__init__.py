"""HTTP API compatible with the original orchestrator's routes, on top of Dagster (`wfp up` serves it)."""
