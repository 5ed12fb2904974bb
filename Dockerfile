# One image for the platform's processes; the compose file picks the command (Pathway service, Dagster
# code server, webserver, daemon). Targets: `pathway` and `dagster` differ only in their default command.
FROM python:3.11-slim AS base
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1
WORKDIR /app
COPY pyproject.toml README.md ./
COPY workflow_platform ./workflow_platform
RUN pip install .
COPY workflows ./workflows
COPY dagster.yaml workspace.yaml ./
COPY deploy ./deploy
ENV DAGSTER_HOME=/app WORKFLOWS_DIR=/app/workflows

FROM base AS pathway
EXPOSE 8000
HEALTHCHECK --interval=10s --timeout=5s --retries=6 \
  CMD python -c "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/health', timeout=4)"
CMD ["python", "-m", "workflow_platform.pathway_service", "--host", "0.0.0.0", "--port", "8000"]

FROM base AS dagster
EXPOSE 3000 4000
CMD ["dagster", "code-server", "start", "-m", "workflow_platform.definitions", "-h", "0.0.0.0", "-p", "4000"]
