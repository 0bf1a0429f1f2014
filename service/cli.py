"""The `greenpool` command: `greenpool serve` runs gunicorn with one GreenWorker process.

Flags override `GREENPOOL_*` variables, which override defaults; the resulting config is handed to the
worker through the environment so that `create_app()` there sees exactly what was asked for.
"""

from __future__ import annotations

import argparse
import ipaddress
import logging
import os
import sys
from collections.abc import Sequence
from importlib.metadata import PackageNotFoundError, version
from typing import Any

from . import logs
from .client.cli import add_client_parsers
from .config import Config, ConfigError

log = logging.getLogger("greenpool")


def _serve_parser(sub: Any) -> None:
    p = sub.add_parser("serve", help="run the HTTP service (gunicorn + one GreenWorker process)")
    p.add_argument("--bind", help="host:port to listen on (GREENPOOL_BIND, default 127.0.0.1:8000)")
    p.add_argument("--pool-size", type=int, help="jobs running at once (GREENPOOL_POOL_SIZE)")
    p.add_argument("--pools", help="named pools beside default, comma-separated name:size (GREENPOOL_POOLS)")
    p.add_argument("--max-queued", type=int, help="queued jobs before 429, per pool (GREENPOOL_MAX_QUEUED)")
    p.add_argument("--result-ttl", type=float, help="seconds finished jobs are kept (GREENPOOL_RESULT_TTL)")
    p.add_argument("--max-records", type=int, help="finished jobs kept at most (GREENPOOL_MAX_RECORDS)")
    p.add_argument("--http-allow", help="comma-separated CIDRs the http task may reach besides public addresses")
    p.add_argument("--plugins", help="comma-separated modules whose @task functions to register")
    p.add_argument("--graceful-timeout", type=float, help="seconds to drain on SIGTERM")
    p.add_argument("--keepalive", type=float, help="seconds an idle keep-alive connection stays open")
    p.add_argument("--worker-connections", type=int, help="concurrent connections at most")
    p.add_argument("--log-level", help="debug, info, warning or error")
    p.add_argument("--tokens-file", help="file of bearer tokens, `name role secret` per line (GREENPOOL_TOKENS_FILE)")
    p.add_argument(
        "--insecure",
        action="store_true",
        default=None,
        help="allow a non-loopback bind without tokens, logging a warning (GREENPOOL_INSECURE=1; containers)",
    )
    p.set_defaults(func=serve)


def serve(args: argparse.Namespace) -> int:
    """Validate the config, export it to the environment, and run gunicorn until it exits."""
    overrides = {
        "bind": args.bind,
        "pool_size": args.pool_size,
        "pools": _split(args.pools),
        "max_queued": args.max_queued,
        "result_ttl": args.result_ttl,
        "max_records": args.max_records,
        "http_allow": _split(args.http_allow),
        "plugins": _split(args.plugins),
        "graceful_timeout": args.graceful_timeout,
        "keepalive": args.keepalive,
        "worker_connections": args.worker_connections,
        "log_level": args.log_level,
        "tokens_file": args.tokens_file and os.path.abspath(args.tokens_file),
    }
    try:
        config = Config.from_env(**overrides)
    except ConfigError as exc:
        print(f"greenpool: {exc}", file=sys.stderr)
        return 2
    if not _is_loopback(config.bind) and not config.token_table():
        if not _insecure(args):
            print(
                f"greenpool: refusing to bind {config.bind}: without tokens only loopback addresses are allowed "
                "(configure GREENPOOL_TOKENS or --tokens-file; or --insecure / GREENPOOL_INSECURE=1 allows it anyway: "
                "anyone who can reach the port may then use the API)",
                file=sys.stderr,
            )
            return 2
        logs.configure(config.log_level)
        log.warning(
            "insecure: serving on a non-loopback address without tokens; anyone who can reach it may use the API",
            extra={"bind": config.bind},
        )
    from .engine import StoreError, check_store  # here: client sub-commands need no engine

    try:
        check_store(config)
    except StoreError as exc:
        print(f"greenpool: {exc}", file=sys.stderr)
        return 2
    os.environ.update(config.to_env())
    from .server.gunicorn_app import run  # here, not at the top: client sub-commands need none of the server

    return run(config)


def _insecure(args: argparse.Namespace) -> bool:
    """`--insecure`, else GREENPOOL_INSECURE (1/true/yes/on)."""
    if args.insecure is not None:
        return bool(args.insecure)
    return os.environ.get("GREENPOOL_INSECURE", "").strip().lower() in ("1", "true", "yes", "on")


def _split(value: str | None) -> tuple[str, ...] | None:
    return None if value is None else tuple(v.strip() for v in value.split(",") if v.strip())


def _is_loopback(bind: str) -> bool:
    if bind.startswith("unix:"):
        return True
    host = bind.rsplit(":", 1)[0].strip("[]") if ":" in bind else bind
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _version() -> str:
    """The installed distribution's version ("unknown" when run from a source tree that is not installed)."""
    try:
        return version("greenpool")
    except PackageNotFoundError:
        return "unknown"


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `greenpool` console script."""
    parser = argparse.ArgumentParser(prog="greenpool", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version=f"greenpool {_version()}")
    sub = parser.add_subparsers(dest="command", required=True)
    _serve_parser(sub)
    add_client_parsers(parser, sub)  # submit, get, cancel, pile, map, stats, resize, tasks (service.cli_client)
    args = parser.parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
