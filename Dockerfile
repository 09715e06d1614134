# APEX Schema Admin: the panel, its CLI and the container entrypoint, with the CRM's
# Alembic project in the working directory.
#
#   docker build -t apex-schema-admin .
#   docker-compose -f docker-compose.staging.yml up -d --build     (PostgreSQL 15 + panel)
#
# The command (`schema-admin entrypoint`) waits for the databases, creates them when
# INIT_DB=true, applies pending migrations as an audited job, then execs the server.
# Nothing secret is baked in: DATABASE_URL, ADMIN_DATABASE_URL and SECRET_KEY come from
# the environment at run time.

ARG PYTHON_IMAGE=python:3.11-slim-bookworm

# --- builder: the app as a wheel, installed with its dependencies into a venv ----------
FROM ${PYTHON_IMAGE} AS builder

ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /src
COPY pyproject.toml README.md ./
COPY admin ./admin
COPY templates ./templates
COPY static ./static

RUN python -m pip wheel --no-deps --wheel-dir /dist . \
 && python -m venv /opt/venv \
 && /opt/venv/bin/pip install /dist/apex_schema_admin-*.whl

# --- runtime: slim Python, the PostgreSQL 15 client tools, a non-root user ---------------
FROM ${PYTHON_IMAGE} AS runtime

# The major version of the server in docker-compose.staging.yml (postgres:15): pg_dump
# refuses a server newer than itself. Bookworm's own postgresql-client-15 is that version.
ARG PG_MAJOR=15

LABEL org.opencontainers.image.title="APEX Schema Admin" \
      org.opencontainers.image.description="Web panel, CLI and container entrypoint for the Alembic migrations of a PostgreSQL database" \
      org.opencontainers.image.licenses="MIT"

# hadolint ignore=DL3008
RUN apt-get update \
 && apt-get install -y --no-install-recommends "postgresql-client-${PG_MAJOR}" \
 && rm -rf /var/lib/apt/lists/*

RUN groupadd --system --gid 10001 app \
 && useradd --system --uid 10001 --gid app --home-dir /app --no-create-home \
      --shell /usr/sbin/nologin app

COPY --from=builder /opt/venv /opt/venv

ENV PATH="/opt/venv/bin:${PATH}" \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    HOST=0.0.0.0 \
    PORT=8000 \
    ALEMBIC_CONFIG=/app/alembic.ini \
    VAR_DIR=/app/var \
    BACKUP_DIR=/app/backups \
    PG_BIN_DIR=/usr/lib/postgresql/${PG_MAJOR}/bin

# The CRM's migration project (and the seed's scripts/) where alembic.ini expects them;
# owned by root: the panel reads them, it never edits them here.
WORKDIR /app
COPY alembic.ini ./
COPY alembic ./alembic
COPY app ./app
COPY scripts ./scripts

RUN mkdir -p /app/var /app/backups \
 && chown app:app /app/var /app/backups \
 && chmod 0700 /app/var /app/backups
VOLUME ["/app/var", "/app/backups"]

USER 10001:10001
EXPOSE 8000

# Liveness only (no database): a long start-up migration is covered by the start period.
HEALTHCHECK --interval=30s --timeout=5s --start-period=120s --retries=3 \
  CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/healthz' % os.environ.get('PORT', '8000'), timeout=4)"]

STOPSIGNAL SIGTERM
CMD ["schema-admin", "entrypoint"]
