# greenpool: one process, one pool. Build: `docker build -t greenpool .`; run: `docker compose up` (see README).
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /app

# Dependencies in their own cached layer. Only pyproject.toml is copied here and its [project].dependencies
# are installed as they are written there (read with the standard library's tomllib): no second list to keep
# in sync, no stub packages, and this layer is rebuilt only when pyproject.toml changes, not on source edits.
COPY pyproject.toml ./
RUN python -c "import tomllib; print('\n'.join(tomllib.load(open('pyproject.toml', 'rb'))['project']['dependencies']))" > /tmp/requirements.txt \
 && pip install -r /tmp/requirements.txt \
 && rm /tmp/requirements.txt

# The source, installed on top without touching the dependencies (the `greenpool` command lands on PATH).
COPY README.md ./
COPY pool_core ./pool_core
COPY service ./service
RUN pip install --no-deps . && rm -rf build ./*.egg-info

# The entrypoint (GREENPOOL_INSECURE only while no tokens are configured) and the healthcheck (GET /healthz on
# GREENPOOL_BIND's port), both in deploy/image/.
COPY --chmod=0755 deploy/image/entrypoint.py /usr/local/bin/greenpool-entrypoint
COPY --chmod=0755 deploy/image/healthcheck.py /usr/local/bin/greenpool-healthcheck

# Never run as root. /data holds the store (GREENPOOL_DATA_DIR): a volume, owned by the user that writes it.
RUN useradd --system --create-home --uid 10001 --shell /usr/sbin/nologin greenpool \
 && install -d -o greenpool -g greenpool /data
USER greenpool
VOLUME /data

# The server's drain period fits `docker stop`'s default 10 s before SIGKILL; compose raises both together
# (GREENPOOL_GRACEFUL_TIMEOUT and stop_grace_period). Without tokens, the entrypoint sets GREENPOOL_INSECURE=1
# so that the 0.0.0.0 bind is allowed (greenpool logs a warning): publish the port on a trusted network only
# (compose uses the host's loopback). With GREENPOOL_TOKENS or GREENPOOL_TOKENS_FILE every API call needs a
# bearer token. Plugin modules mounted at /plugins are importable (GREENPOOL_PLUGINS names them).
ENV GREENPOOL_BIND=0.0.0.0:8000 \
    GREENPOOL_DATA_DIR=/data \
    GREENPOOL_GRACEFUL_TIMEOUT=8 \
    PYTHONPATH=/plugins

EXPOSE 8000
HEALTHCHECK --interval=10s --timeout=3s --start-period=10s --retries=3 CMD ["greenpool-healthcheck"]
# SIGTERM drains: stop accepting, let running jobs finish within the grace period, cancel the rest, exit 0
# (queued jobs stay in the store on /data for the next start).
STOPSIGNAL SIGTERM
ENTRYPOINT ["greenpool-entrypoint"]
CMD ["greenpool", "serve"]
