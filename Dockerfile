# Statewright: multi-stage build; the runtime image runs as a non-root user.
# docker build -t statewright . && docker run -p 8080:8080 -e STATEWRIGHT_DATABASE_URL=postgresql://... statewright
# BASE_IMAGE: any Debian-like image with Python 3.11 and its venv module (`python3`): the official
# image by default; scripts/image-check.sh passes a local Debian bookworm one (no registry here).
ARG BASE_IMAGE=python:3.11-slim
FROM ${BASE_IMAGE} AS build
WORKDIR /src
RUN python3 -m venv /opt/statewright
COPY pyproject.toml README.md alembic.ini ./
COPY alembic ./alembic
COPY definitions ./definitions
COPY statemachine ./statemachine
COPY service ./service
# The package, and beside it under /opt/statewright/share/statewright the migrations and the
# sample definitions (pyproject.toml's data-files, found by service/shipped.py).
RUN /opt/statewright/bin/pip install --no-cache-dir .

FROM ${BASE_IMAGE}
RUN useradd --create-home --uid 10001 statewright
COPY --from=build /opt/statewright /opt/statewright
WORKDIR /home/statewright
ENV PATH=/opt/statewright/bin:$PATH PYTHONUNBUFFERED=1
USER statewright
EXPOSE 8080
# Migrate, then serve the API with two in-process worker lanes; scale out with `statewright worker`.
CMD ["sh", "-c", "statewright db upgrade && exec statewright serve --host 0.0.0.0 --port 8080 --workers 2"]
