"""The `greenpool` client sub-commands (submit, get, cancel, pile, map, stats, pools, resize, tasks, jobs).

Global options `--url` (default `$GREENPOOL_URL` or http://127.0.0.1:8000) and `--token` (`$GREENPOOL_TOKEN`).
Exit codes (`Exit`): 0 ok; 1 a job did not succeed (submit --wait, get --wait, pile, map); 2 usage, input or
HTTP error (the problem's detail on stderr); 3 `--wait` ran out before the job ended.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections import deque
from collections.abc import Callable, Iterator
from enum import IntEnum
from typing import IO, Any

import requests

from .client import DEFAULT_URL, TERMINAL, Client
from .errors import GreenpoolError, PayloadTooLarge, Unauthorized
from .progress import Progress
from .split import SplitPile


class Exit(IntEnum):
    """The CLI's exit statuses (documented in the README)."""

    OK = 0
    JOB_FAILED = 1  # a job ended other than succeeded
    ERROR = 2  # usage, input or HTTP error
    NOT_FINISHED = 3  # --wait ran out while the job was still queued or running


POOL_HELP = "the pool to run in (default: the task's, else `default`)"
POOL_COLUMNS = ("name", "size", "running", "free", "queued", "submitted", "succeeded", "failed")
BATCH_BYTES = 256 * 1024  # a pile larger than this is sent as an open pile in several requests
WATCH_FIELDS = ("size", "running", "free", "waiting", "queued")


class InputError(Exception):
    """A line of the input that is not a JSON object."""


def add_client_parsers(parser: argparse.ArgumentParser, sub: Any) -> None:
    """Add `--url`/`--token` to `parser` and the client sub-commands to its subparsers `sub`."""
    parser.add_argument("--url", help=f"server base URL (GREENPOOL_URL, default {DEFAULT_URL})")
    parser.add_argument("--token", help="bearer token (GREENPOOL_TOKEN)")
    common = argparse.ArgumentParser(add_help=False)  # the same options after the sub-command
    common.add_argument("--url", default=argparse.SUPPRESS, help=argparse.SUPPRESS)
    common.add_argument("--token", default=argparse.SUPPRESS, help=argparse.SUPPRESS)

    p = sub.add_parser("submit", parents=[common], help="submit a job and print it as JSON")
    p.add_argument("task")
    p.add_argument("--args", default="{}", help="the task's arguments as a JSON object")
    p.add_argument("--timeout", type=float, help="seconds the job may run")
    p.add_argument("--wait", type=float, help="wait up to S seconds for the job to end")
    p.add_argument("--pool", help=POOL_HELP)
    _add_option_flags(p)
    p.set_defaults(func=_run(cmd_submit))

    p = sub.add_parser("get", parents=[common], help="print a job as JSON")
    p.add_argument("job_id")
    p.add_argument("--wait", type=float, help="wait up to S seconds for the job to end")
    p.set_defaults(func=_run(cmd_get))

    p = sub.add_parser("cancel", parents=[common], help="cancel a job")
    p.add_argument("job_id")
    p.set_defaults(func=_run(cmd_cancel))

    for name, helptext in (("pile", "run a pile: print each result record as a JSON line as it finishes"),
                           ("map", "map a task over items: print each result as a JSON line")):  # fmt: skip
        p = sub.add_parser(name, parents=[common], help=helptext)
        p.add_argument("task")
        p.add_argument("file", nargs="?", default="-", help="JSON lines of arguments (default: stdin)")
        p.add_argument("--timeout", type=float, help="seconds each job may run")
        p.add_argument("--pool", help=POOL_HELP)
        _add_option_flags(p)
        p.add_argument("--progress", action="store_true", help="progress bar on stderr (default: if a TTY)")
        default_order = "completion" if name == "pile" else "submitted"
        p.add_argument("--order", choices=("completion", "submitted"), default=default_order,
                       help=f"result order (default {default_order})")  # fmt: skip
        p.set_defaults(func=_run(cmd_pile if name == "pile" else cmd_map))

    p = sub.add_parser("stats", parents=[common], help="print a pool's stats (default: the `default` pool)")
    p.add_argument("--pool", help="the pool (default: `default`)")
    p.add_argument("--watch", nargs="?", type=float, const=1.0, metavar="SECONDS",
                   help="refresh a live view every SECONDS (default 1) until Ctrl-C")  # fmt: skip
    p.add_argument("--count", type=int, help="with --watch: stop after N refreshes")
    p.set_defaults(func=_run(cmd_stats))

    p = sub.add_parser("pools", parents=[common], help="list every pool as a table")
    p.add_argument("--json", action="store_true", help="one JSON line per pool, with all its counters")
    p.set_defaults(func=_run(cmd_pools))

    p = sub.add_parser("resize", parents=[common], help="set a pool's size (creating a named pool if absent)")
    p.add_argument("size", type=int)
    p.add_argument("--pool", help="the pool to resize or create (default: `default`)")
    p.set_defaults(func=_run(cmd_resize))

    p = sub.add_parser("tasks", parents=[common], help="list the registered tasks as a table")
    p.add_argument("--json", action="store_true", help="one JSON line per task, with its args schema")
    p.set_defaults(func=_run(cmd_tasks))

    p = sub.add_parser("jobs", parents=[common], help="list recent jobs, newest first, one JSON line each")
    p.add_argument("--status", choices=("queued", "running", *TERMINAL), help="only jobs in this status")
    p.add_argument("--limit", type=int, default=20, help="at most N jobs (default 20)")
    p.set_defaults(func=_run(cmd_jobs))


def _add_option_flags(p: argparse.ArgumentParser) -> None:
    """--retries, --retry-backoff and --delay: the jobs' options (design §3; absent: the server's default)."""
    p.add_argument("--retries", type=int, help="more attempts after one that failed or timed out")
    p.add_argument("--retry-backoff", type=float, metavar="SECONDS",
                   help="seconds before the second attempt, doubling before each later one (default 1)")  # fmt: skip
    p.add_argument("--delay", type=float, metavar="SECONDS", help="hold each job queued this long before it may start")


def _options(args: argparse.Namespace) -> dict[str, Any]:
    """The job options the command line gave, as `Client` keyword arguments."""
    return {"retries": args.retries, "retry_backoff": args.retry_backoff, "delay": args.delay}


def _run(command: Callable[[Client, argparse.Namespace], int]) -> Callable[[argparse.Namespace], int]:
    """Wrap a command: build the client from the options, map errors to exit code 2."""

    def run(args: argparse.Namespace) -> int:
        url = args.url or os.environ.get("GREENPOOL_URL") or DEFAULT_URL
        token = args.token or os.environ.get("GREENPOOL_TOKEN") or None
        try:
            with Client(url, token=token) as client:
                return command(client, args)
        except Unauthorized as exc:
            hint = "the token was refused" if token else "this server needs a token"
            _err(f"{exc.title}: {exc.detail}\n  {hint}: pass --token TOKEN or set GREENPOOL_TOKEN")
        except GreenpoolError as exc:
            _err(f"{exc.title}: {exc.detail}" + _field_errors(exc.problem))
        except requests.RequestException as exc:
            _err(f"cannot reach {url}: {exc}")
        except InputError as exc:
            _err(str(exc))
        except KeyboardInterrupt:
            return Exit.OK if getattr(args, "watch", None) is not None else 130
        except BrokenPipeError:  # e.g. `greenpool map … | head`
            sys.stderr.close()
            return Exit.OK
        return Exit.ERROR

    return run


def _err(message: str) -> None:
    print(f"greenpool: {message}", file=sys.stderr)


def _field_errors(problem: dict[str, Any]) -> str:
    errors = problem.get("errors") or []
    return "".join(f"\n  {e.get('field')}: {e.get('message')}" for e in errors[:20])


def _print(value: Any) -> None:
    print(json.dumps(value, separators=(",", ":")), flush=True)


# -- commands ---------------------------------------------------------------------------------------
def cmd_submit(client: Client, args: argparse.Namespace) -> int:
    """Submit one job; print it. With --wait: exit 1 if it ended other than succeeded, 3 if it did not end."""
    try:
        task_args = json.loads(args.args)
    except ValueError as exc:
        raise InputError(f"--args is not valid JSON: {exc}") from None
    if not isinstance(task_args, dict):
        raise InputError("--args must be a JSON object")
    job = client.submit(args.task, task_args, timeout=args.timeout, wait=args.wait, pool=args.pool, **_options(args))
    _print(job)
    return _job_exit(job, args.wait)


def _job_exit(job: dict[str, Any], wait: float | None) -> Exit:
    """OK, or JOB_FAILED if it ended other than succeeded, or NOT_FINISHED if `wait` was given and it runs on."""
    if job["status"] not in TERMINAL:
        return Exit.OK if wait is None else Exit.NOT_FINISHED
    return Exit.OK if job["status"] == "succeeded" else Exit.JOB_FAILED


def cmd_get(client: Client, args: argparse.Namespace) -> int:
    """Print one job (long-polling with --wait)."""
    job = client.get(args.job_id) if args.wait is None else client.wait(args.job_id, args.wait)
    _print(job)
    return _job_exit(job, args.wait) if args.wait is not None else Exit.OK


def cmd_cancel(client: Client, args: argparse.Namespace) -> int:
    """Cancel a job; print it."""
    _print(client.cancel(args.job_id))
    return Exit.OK


def cmd_pile(client: Client, args: argparse.Namespace) -> int:
    """Create a pile from JSON lines; print each record as it arrives, with an optional progress bar."""
    items = read_items(args.file)
    pile = create_pile(client, args.task, items, args)
    progress = Progress(len(items), sys.stderr, enabled=args.progress or sys.stderr.isatty())
    for record in pile:
        _print(record)
        progress.update(record["status"] == "succeeded")
    progress.finish()
    return Exit.JOB_FAILED if progress.failed else Exit.OK


def cmd_map(client: Client, args: argparse.Namespace) -> int:
    """Map a task over JSON lines; print each result (`null` for an item that failed, reported on stderr)."""
    items = read_items(args.file)
    progress = Progress(len(items), sys.stderr, enabled=args.progress or sys.stderr.isatty())
    if len(json.dumps(items)) <= BATCH_BYTES:
        records: Iterator[dict[str, Any]] = client.map_records(args.task, items, args.order, args.timeout, args.pool,
                                                               **_options(args))  # fmt: skip
    else:  # too big for one request: the same stream, through an open pile filled in batches
        records = iter(create_pile(client, args.task, items, args))
    for record in records:
        ok = record["status"] == "succeeded"
        _print(record["result"] if ok else None)
        if not ok:
            progress.clear()
            error = record.get("error") or {}
            _err(f"item {record['index']} {record['status']}: {error.get('type')}: {error.get('message')}")
        progress.update(ok)
    progress.finish()
    return Exit.JOB_FAILED if progress.failed else Exit.OK


def cmd_stats(client: Client, args: argparse.Namespace) -> int:
    """Print the pool stats once, or (--watch) a compact live line every SECONDS until Ctrl-C or --count."""
    if args.watch is None:
        _print(client.stats(args.pool))
        return Exit.OK
    tty = sys.stdout.isatty()
    shown = 0
    while args.count is None or shown < args.count:
        if shown:
            time.sleep(max(0.0, args.watch))
        stats = client.stats(args.pool)
        line = " ".join(f"{k}={stats.get(k)}" for k in WATCH_FIELDS)
        line += f" done={sum(stats.get(k, 0) for k in TERMINAL)} up={stats.get('uptime_s', 0):.0f}s"
        if tty:
            sys.stdout.write("\r\x1b[2K" + line)
            sys.stdout.flush()
        else:
            print(line, flush=True)
        shown += 1
    if tty:
        print()
    return Exit.OK


def cmd_resize(client: Client, args: argparse.Namespace) -> int:
    """Resize a pool (creating a named one if absent); print its new stats."""
    _print(client.resize(args.size, args.pool))
    return Exit.OK


def cmd_pools(client: Client, args: argparse.Namespace) -> int:
    """Print every pool as a table (name, size, running, free, queued, job counters), or JSON lines."""
    header = tuple(c.upper() for c in POOL_COLUMNS)
    return _listing(client.pools(), args.json, header, lambda p: tuple(str(p[c]) for c in POOL_COLUMNS))


def _listing(items: list[dict[str, Any]], as_json: bool, header: tuple[str, ...],
             row: Callable[[dict[str, Any]], tuple[str, ...]]) -> int:  # fmt: skip
    """Print `items` as JSON lines, or as a table of `header` and one `row(item)` each."""
    if as_json:
        for item in items:
            _print(item)
    else:
        _table([header, *map(row, items)])
    return Exit.OK


def _table(rows: list[tuple[str, ...]]) -> None:
    """Print `rows` in columns padded to their widest cell (the last column unpadded)."""
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]) - 1)]
    for row in rows:
        print("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=False)) + "  " + row[-1])


def cmd_tasks(client: Client, args: argparse.Namespace) -> int:
    """Print the registered tasks as a table (name, where it runs, its arguments, what it does), or JSON lines."""
    return _listing(client.tasks(), args.json, ("NAME", "RUNS ON", "ARGS", "DESCRIPTION"),
                    lambda t: (t["name"], "thread" if t["blocking"] else "hub", _arg_summary(t["args_schema"]),
                               t["description"].split("\n")[0]))  # fmt: skip


def _arg_summary(schema: dict[str, Any]) -> str:
    """`name: type` per argument, `?` after the name of an optional one."""
    required = set(schema.get("required", ()))
    parts = []
    for name, prop in schema.get("properties", {}).items():
        kind = prop.get("type", "any")
        kind = "|".join(kind) if isinstance(kind, list) else kind
        parts.append(f"{name}{'' if name in required else '?'}: {kind}")
    return ", ".join(parts) or "-"


def cmd_jobs(client: Client, args: argparse.Namespace) -> int:
    """Print recent jobs, newest first, one JSON line each (`--status`, `--limit`)."""
    if args.limit < 1:
        raise InputError("--limit must be at least 1")
    for count, job in enumerate(client.jobs(args.status, limit=min(args.limit, 100)), start=1):
        _print(job)
        if count >= args.limit:
            break
    return Exit.OK


# -- helpers ----------------------------------------------------------------------------------------
def read_items(path: str) -> list[dict[str, Any]]:
    """Argument objects from JSON lines in `path` (`-` for stdin); blank lines are skipped."""
    if path == "-":
        return _parse_lines(sys.stdin, "<stdin>")
    try:
        with open(path, encoding="utf-8") as f:
            return _parse_lines(f, path)
    except OSError as exc:
        raise InputError(f"cannot read {path}: {exc.strerror}") from None


def _parse_lines(stream: IO[str], name: str) -> list[dict[str, Any]]:
    items = []
    for number, line in enumerate(stream, 1):
        if not line.strip():
            continue
        try:
            item = json.loads(line)
        except ValueError as exc:
            raise InputError(f"{name}:{number}: not valid JSON: {exc}") from None
        if not isinstance(item, dict):
            raise InputError(f"{name}:{number}: each line must be a JSON object of arguments")
        items.append(item)
    return items


def create_pile(client: Client, task: str, items: list[dict[str, Any]], args: argparse.Namespace) -> Any:
    """A closed pile of `items` (with the options `args.timeout`, `args.pool`, `args.order` and the job
    options): one request if small (the client splits it over the server's caps), else open piles filled in
    batches, a new one whenever the server's pile cap is reached, then closed."""
    batches = deque(_batches(items))
    timeout, pool, order, options = args.timeout, args.pool, args.order, _options(args)
    if len(batches) <= 1:
        return client.pile(task, items=items, timeout=timeout, order=order, pool=pool, **options)
    parts: list[tuple[int, Any]] = []  # (offset of the part's first item, its pile)
    held = sent = 0  # items in the newest part; items sent
    while batches:
        batch = batches.popleft()
        try:
            if held:
                parts[-1][1].add(task, items=batch, timeout=timeout, pool=pool, **options)
            else:
                parts.append((sent, client.pile(task, items=batch, timeout=timeout, order=order, open=True,
                                                pool=pool, **options)))  # fmt: skip
        except PayloadTooLarge as exc:
            limit = exc.jobs_limit
            if limit is None or (not held and len(batch) <= limit):
                raise
            if held:  # the newest part is full: the batch starts the next one
                batches.appendleft(batch)
            else:  # the batch alone is over the cap: in pieces
                batches.extendleft(reversed([batch[i : i + limit] for i in range(0, len(batch), limit)]))
            held = 0
            continue
        held += len(batch)
        sent += len(batch)
    for _, pile in parts:
        pile.close()
    return parts[0][1] if len(parts) == 1 else SplitPile(parts, order)


def _batches(items: list[dict[str, Any]]) -> Iterator[list[dict[str, Any]]]:
    batch: list[dict[str, Any]] = []
    size = 0
    for item in items:
        n = len(json.dumps(item)) + 2
        if batch and size + n > BATCH_BYTES:
            yield batch
            batch, size = [], 0
        batch.append(item)
        size += n
    yield batch
