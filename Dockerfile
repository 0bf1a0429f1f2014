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

# Never run as root.
RUN useradd --system --create-home --uid 10001 --shell /usr/sbin/nologin greenpool
USER greenpool

# The server's drain period fits `docker stop`'s default 10 s before SIGKILL; compose raises both together
# (GREENPOOL_GRACEFUL_TIMEOUT and stop_grace_period). GREENPOOL_INSECURE=1 lets `serve` bind 0.0.0.0 with
# no tokens configured (it logs a warning); set GREENPOOL_TOKENS or GREENPOOL_TOKENS_FILE to require bearer
# tokens (then the flag is not needed). Publish the port on a trusted network only (compose uses loopback).
ENV GREENPOOL_BIND=0.0.0.0:8000 \
    GREENPOOL_GRACEFUL_TIMEOUT=8 \
    GREENPOOL_INSECURE=1

EXPOSE 8000
HEALTHCHECK --interval=10s --timeout=3s --start-period=10s --retries=3 \
    CMD python -c "import urllib.request,sys; urllib.request.urlopen('http://127.0.0.1:8000/healthz', timeout=2)"
# SIGTERM drains: stop accepting, let running jobs finish within the grace period, cancel the rest, exit 0.
STOPSIGNAL SIGTERM
CMD ["greenpool", "serve", "--bind", "0.0.0.0:8000"]
