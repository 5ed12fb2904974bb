"""workflow-platform: workflow.json files run as Dagster jobs on real services."""
