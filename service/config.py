"""Configuration: one `Config` made of sections (server, API limits, engine, storage, auth), defaults as
named constants, `GREENPOOL_*` environment overrides in one place, and the bearer-token table it holds
(`load_tokens`; `service.api.auth` checks requests against it).

`greenpool serve` flags override the environment (see `service.cli`).
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

DEFAULT_BIND = "127.0.0.1:8000"
DEFAULT_POOL_SIZE = 100
DEFAULT_MAX_QUEUED = 10_000
DEFAULT_RESULT_TTL = 3600.0
DEFAULT_MAX_RECORDS = 100_000
DEFAULT_MAX_BODY_BYTES = 1 << 20
DEFAULT_MAX_WAIT = 60.0
DEFAULT_MAX_JOB_TIMEOUT = 86_400.0
DEFAULT_MAX_POOL_SIZE = 100_000
DEFAULT_MAX_THREADS = 256
DEFAULT_GRACEFUL_TIMEOUT = 30.0
DEFAULT_KEEPALIVE = 5.0
DEFAULT_WORKER_CONNECTIONS = 10_000
DEFAULT_LOG_LEVEL = "info"
DEFAULT_STREAM_HEARTBEAT = 15.0
DEFAULT_METRICS_PUBLIC = True
DEFAULT_MAX_ARGS_BYTES = 256 << 10
DEFAULT_MAX_RESULT_BYTES = 1 << 20
DEFAULT_MAX_PILE_SIZE = 10_000
DEFAULT_MAX_MAP_ITEMS = 10_000
DEFAULT_MAX_STREAMS_PER_CLIENT = 1000
DEFAULT_HEADER_TIMEOUT = 10.0
DEFAULT_BODY_TIMEOUT = 30.0
DEFAULT_SEND_TIMEOUT = 30.0
DEFAULT_MAX_RETRIES = 25
DEFAULT_MAX_BACKOFF = 300.0
DEFAULT_MAX_DELAY = 7 * 86_400.0
DEFAULT_LEASE = 15.0  # seconds (GREENPOOL_LEASE)

DEFAULT_STORE = ""  # the default: sqlite:$GREENPOOL_DATA_DIR/greenpool.db (design §7)
DEFAULT_DATA_DIR = "./greenpool-data"
STORE_FILE = "greenpool.db"
DEFAULT_SQLITE_SYNC = "normal"
SQLITE_SYNCS = ("normal", "full")
SQLITE_PREFIX = "sqlite:"
REDIS_SCHEMES = ("redis://", "rediss://")  # a shared Redis store (design §8); its password may be in the URL
DEFAULT_REDIS_PREFIX = "gp"

ENV_PREFIX = "GREENPOOL_"
DEFAULT_POOL = "default"  # the pool that always exists (`/v1/pool`), sized by GREENPOOL_POOL_SIZE
POOL_NAME = re.compile(r"[a-z0-9_-]{1,64}")  # a named pool's name (design §9)
#: Size, count and time limits (Hardening); each must be > 0.
LIMITS = (
    "max_args_bytes", "max_result_bytes", "max_pile_size", "max_map_items", "max_streams_per_client",
    "header_timeout", "body_timeout", "send_timeout",
)  # fmt: skip


class ConfigError(ValueError):
    """A configuration value that cannot be used; the message names the variable."""


@dataclass(frozen=True)
class ServerSettings:
    """The HTTP server: where it listens, its connections and their deadlines, shutdown, logging."""

    bind: str = DEFAULT_BIND
    graceful_timeout: float = DEFAULT_GRACEFUL_TIMEOUT
    keepalive: float = DEFAULT_KEEPALIVE
    worker_connections: int = DEFAULT_WORKER_CONNECTIONS
    header_timeout: float = DEFAULT_HEADER_TIMEOUT  # request line + headers, from accept or first byte
    body_timeout: float = DEFAULT_BODY_TIMEOUT  # request body, from the end of the headers (408)
    send_timeout: float = DEFAULT_SEND_TIMEOUT  # a response send that makes no progress: connection closed
    log_level: str = DEFAULT_LOG_LEVEL


@dataclass(frozen=True)
class ApiLimits:
    """What one request may ask of the API: body and args sizes, piles, maps, waits, streams."""

    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES
    max_wait: float = DEFAULT_MAX_WAIT
    max_args_bytes: int = DEFAULT_MAX_ARGS_BYTES  # one job's `args`, serialized (413)
    max_pile_size: int = DEFAULT_MAX_PILE_SIZE  # jobs in one pile, however they were added (413)
    max_map_items: int = DEFAULT_MAX_MAP_ITEMS  # items in one POST /v1/map (413)
    max_streams_per_client: int = DEFAULT_MAX_STREAMS_PER_CLIENT  # open result streams per token/address (429)
    stream_heartbeat: float = DEFAULT_STREAM_HEARTBEAT


@dataclass(frozen=True)
class EngineSettings:
    """The engine: pool sizes, the queue bounds, retention, job limits, the tasks it loads."""

    pool_size: int = DEFAULT_POOL_SIZE
    max_queued: int = DEFAULT_MAX_QUEUED
    max_queued_per_client: int = 0  # jobs one token/address may have queued (429); 0: 3/4 of max_queued
    result_ttl: float = DEFAULT_RESULT_TTL
    max_records: int = DEFAULT_MAX_RECORDS
    max_job_timeout: float = DEFAULT_MAX_JOB_TIMEOUT
    max_pool_size: int = DEFAULT_MAX_POOL_SIZE
    max_threads: int = DEFAULT_MAX_THREADS  # OS threads for blocking tasks: the pools' sizes, at most this
    max_result_bytes: int = DEFAULT_MAX_RESULT_BYTES  # one job's result, serialized (else failed: ResultTooLarge)
    http_allow: tuple[str, ...] = ()
    plugins: tuple[str, ...] = ()
    pools: tuple[str, ...] = ()  # `name:size` seeds of named pools (GREENPOOL_POOLS=default:100,db:20,io:500)
    max_retries: int = DEFAULT_MAX_RETRIES  # a job's `retries` at most (422 beyond)
    max_backoff: float = DEFAULT_MAX_BACKOFF  # `retry_backoff` at most, and the longest wait between attempts
    max_delay: float = DEFAULT_MAX_DELAY  # a job's `delay` at most (422 beyond)
    lease: float = DEFAULT_LEASE  # cluster mode: seconds a dead replica's running jobs keep their slots
    replica_id: str = ""  # cluster mode: this replica's id; "" is `hostname:pid`

    def pool_seeds(self) -> dict[str, tuple[int, str]]:
        """The pools to seed a store that has no size for them, each with the variable its size comes from:
        `default` (GREENPOOL_POOL_SIZE unless GREENPOOL_POOLS names it), then each `name:size` of
        GREENPOOL_POOLS; ConfigError naming a bad entry."""
        seeds = {DEFAULT_POOL: (self.pool_size, f"{ENV_PREFIX}POOL_SIZE")}
        for entry in self.pools:
            name, _, size = entry.partition(":")
            if not POOL_NAME.fullmatch(name) or not _INTEGER.fullmatch(size) or int(size) > self.max_pool_size:
                raise ConfigError(f"{ENV_PREFIX}POOLS entry {entry!r} must be name:size (a name of 1-64 of a-z 0-9 _ -,"
                                  f" a size from 0 to {ENV_PREFIX}MAX_POOL_SIZE)")  # fmt: skip
            seeds[name] = (int(size), f"{ENV_PREFIX}POOLS")
        return seeds


@dataclass(frozen=True)
class StorageSettings:
    """Where jobs, results and pool sizes are kept (design §7)."""

    store: str = DEFAULT_STORE  # `memory`, `sqlite:PATH`, or "": sqlite:$GREENPOOL_DATA_DIR/greenpool.db (design §7)
    data_dir: str = DEFAULT_DATA_DIR  # where the default store's file lives (created if missing)
    max_store_bytes: int = 0  # the store file's size cap: beyond it submissions get 503; 0: no cap
    sqlite_sync: str = DEFAULT_SQLITE_SYNC  # `normal` (survives a process crash) or `full` (also an OS crash)
    redis_prefix: str = DEFAULT_REDIS_PREFIX  # what every key of a Redis store starts with (`PREFIX:`)

    @property
    def sqlite_path(self) -> str:
        """The SQLite store's file (`sqlite:PATH`, by default in `data_dir`), or "" when the store is memory."""
        if not self.store:
            return os.path.join(self.data_dir, STORE_FILE)
        return self.store[len(SQLITE_PREFIX) :] if self.store.startswith(SQLITE_PREFIX) else ""

    @property
    def redis_url(self) -> str:
        """The Redis store's `redis://` or `rediss://` URL, or "" when the store is not Redis."""
        return self.store if self.store.startswith(REDIS_SCHEMES) else ""


@dataclass(frozen=True)
class AuthSettings:
    """Bearer tokens and who may read the metrics."""

    tokens: str = field(default="", repr=False)  # `name:role:secret,...` (see load_tokens); never logged
    tokens_file: str = ""
    metrics_public: bool = DEFAULT_METRICS_PUBLIC

    def token_table(self) -> tuple[Token, ...]:
        """The configured bearer tokens (from TOKENS and TOKENS_FILE); empty: authentication is off."""
        return load_tokens(self.tokens, self.tokens_file)


@dataclass(frozen=True)
class Config(ServerSettings, ApiLimits, EngineSettings, StorageSettings, AuthSettings):
    """Everything the service can be told, in one immutable object made of its sections (each layer reads
    its own: the server its ServerSettings, the API its ApiLimits and AuthSettings, …)."""

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **overrides: Any) -> Config:
        """Defaults, then `GREENPOOL_<FIELD>` variables, then `overrides` (CLI flags) on top."""
        environ = os.environ if environ is None else environ
        values: dict[str, Any] = {}
        for f in dataclasses.fields(cls):
            raw = environ.get(ENV_PREFIX + f.name.upper())
            if raw is not None and raw != "":
                values[f.name] = _parse(f.name, f.type, raw)
        values.update({k: v for k, v in overrides.items() if v is not None})
        config = cls(**values)
        config.check()
        return config

    def check(self) -> None:
        """Refuse values the service cannot run with, naming the variable."""
        positive = (
            "max_body_bytes", "max_wait", "max_job_timeout", "max_pool_size", "max_threads", "worker_connections",
            "stream_heartbeat", "lease",
        ) + LIMITS  # fmt: skip
        for name in positive:
            if getattr(self, name) <= 0:
                raise ConfigError(f"{ENV_PREFIX}{name.upper()} must be > 0")
        non_negative = (
            "pool_size", "max_queued", "max_queued_per_client", "result_ttl", "max_records", "graceful_timeout",
            "keepalive", "max_store_bytes", "max_retries", "max_backoff", "max_delay",
        )  # fmt: skip
        for name in non_negative:
            if getattr(self, name) < 0:
                raise ConfigError(f"{ENV_PREFIX}{name.upper()} must be >= 0")
        if self.pool_size > self.max_pool_size:
            raise ConfigError(f"{ENV_PREFIX}POOL_SIZE must be <= {ENV_PREFIX}MAX_POOL_SIZE")
        sqlite = self.store.startswith(SQLITE_PREFIX) and self.sqlite_path
        if self.store not in ("", "memory") and not (sqlite or self.redis_url):
            raise ConfigError(f"{ENV_PREFIX}STORE={self.store!r} must be `memory`, `sqlite:PATH` or `redis://…`")
        if not self.redis_prefix:
            raise ConfigError(f"{ENV_PREFIX}REDIS_PREFIX must not be empty")
        if not self.store and not self.data_dir:
            raise ConfigError(f"{ENV_PREFIX}DATA_DIR must name a directory (the default store's file is there)")
        if self.sqlite_sync not in SQLITE_SYNCS:
            raise ConfigError(f"{ENV_PREFIX}SQLITE_SYNC={self.sqlite_sync!r} must be one of {', '.join(SQLITE_SYNCS)}")
        self.pool_seeds()
        self.token_table()

    def to_env(self) -> dict[str, str]:
        """The `GREENPOOL_*` variables that reproduce this config (how `serve` hands it to the worker)."""
        env = {}
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            env[ENV_PREFIX + f.name.upper()] = ",".join(value) if isinstance(value, tuple) else str(value)
        return env


# -- bearer tokens (the table `service.api.auth` checks requests against) ----------------------------
SUBMIT, ADMIN = "submit", "admin"
ROLES = (SUBMIT, ADMIN)  # in increasing power: a route that needs `submit` is open to `admin` too
_NAME = re.compile(r"[A-Za-z0-9_.@-]{1,64}")
_INTEGER = re.compile(r"[0-9]{1,9}")
_SECRET = re.compile(r"[A-Za-z0-9._~+/-]{16,4096}=*")  # RFC 6750 b64token, at least 16 characters


@dataclass(frozen=True)
class Token:
    """One configured token: its name, role, and the SHA-256 digest of its secret (the secret is not kept)."""

    name: str
    role: str
    digest: bytes


def token_digest(secret: str) -> bytes:
    """The SHA-256 digest a secret is kept and compared as."""
    return hashlib.sha256(secret.encode("utf-8", "replace")).digest()


def load_tokens(spec: str, path: str = "") -> tuple[Token, ...]:
    """Tokens from `GREENPOOL_TOKENS` (`name:role:secret,…`) and the file `GREENPOOL_TOKENS_FILE`
    (`name role secret` per line, `#` comments); ConfigError naming the entry (never the secret) if bad.

    A name may appear more than once with the same role (several secrets for one principal, for rotation);
    the same secret twice, or one name with two roles, is refused.
    """
    entries: list[tuple[str, str, str, str]] = []  # (where, name, role, secret)
    for number, item in enumerate((p.strip() for p in spec.split(",")), 1):
        if item:
            parts = item.split(":", 2)
            if len(parts) != 3:
                raise ConfigError(f"GREENPOOL_TOKENS entry {number} is not name:role:secret")
            entries.append((f"GREENPOOL_TOKENS entry {number}", *parts))
    if path:
        try:
            text = Path(path).read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigError(f"GREENPOOL_TOKENS_FILE={path!r} cannot be read: {exc.__class__.__name__}") from None
        for number, line in enumerate(text.splitlines(), 1):
            line = line.strip()
            if line and not line.startswith("#"):
                parts = line.split()
                if len(parts) != 3:
                    raise ConfigError(f"GREENPOOL_TOKENS_FILE line {number} is not `name role secret`")
                entries.append((f"GREENPOOL_TOKENS_FILE line {number}", *parts))
    tokens: list[Token] = []
    roles: dict[str, str] = {}
    for where, name, role, secret in entries:
        if not _NAME.fullmatch(name):
            raise ConfigError(f"{where}: the name must be 1-64 of A-Z a-z 0-9 _ . @ -")
        if role not in ROLES:
            raise ConfigError(f"{where}: the role must be one of {', '.join(ROLES)}")
        if not _SECRET.fullmatch(secret):
            raise ConfigError(f"{where}: the secret must be at least 16 characters of A-Z a-z 0-9 - . _ ~ + / =")
        if roles.setdefault(name, role) != role:
            raise ConfigError(f"{where}: {name!r} is given two roles")
        token = Token(name, role, token_digest(secret))
        if any(t.digest == token.digest for t in tokens):
            raise ConfigError(f"{where}: this secret is already configured")
        tokens.append(token)
    return tuple(tokens)


def _parse(name: str, kind: Any, raw: str) -> Any:
    var = ENV_PREFIX + name.upper()
    kind = str(kind)
    try:
        if kind == "int":
            return int(raw)
        if kind == "float":
            return float(raw)
        if kind == "bool":
            return _parse_bool(raw)
        if kind.startswith("tuple"):
            return tuple(part.strip() for part in raw.split(",") if part.strip())
        return raw
    except ValueError:
        raise ConfigError(f"{var}={raw!r} is not a valid {kind}") from None


def _parse_bool(raw: str) -> bool:
    value = raw.strip().lower()
    if value in ("1", "true", "yes", "on"):
        return True
    if value in ("0", "false", "no", "off"):
        return False
    raise ValueError(raw)
