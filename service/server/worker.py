"""GreenWorker: a gunicorn worker whose listeners, accept loops and connections are pool_core green threads.

Usage: ``gunicorn -k service.worker.GreenWorker service.app:app``. The app, the job pool and every open
connection share one hub: one worker process is one pool. Built on gunicorn's ``AsyncWorker`` (HTTP/1.1
parsing, keep-alive, ``max_requests``, streamed responses); plain requests take the fast path (``http1``).

* ``init_process`` gives the forked process a fresh hub before the app is loaded (and refuses HTTP/2).
* One accept loop per listener takes a slot of a ``Semaphore(worker_connections)`` before it accepts; each
  connection is served by its own green thread (``pool_core.spawn``, never the job pool). TLS connections
  handshake on their first read, bounded by ``keepalive``.
* Plain-TCP connections are ``connection.Connection``s (slow-client deadlines, disconnect watching); the
  ``clock`` ends keep-alive waits and starts the watchers; the ``supervisor`` runs the main greenlet
  (heartbeat, signals, drain).
"""

from __future__ import annotations

import contextlib
import errno
import gc
import os
import sys
import traceback
from types import FrameType
from typing import Any

from gunicorn import util
from gunicorn.sock import ssl_context
from gunicorn.workers.base_async import AsyncWorker

import pool_core
from pool_core.sockets import GreenSocket, wrap_ssl
from service import logs
from service.config import Config, ConfigError

from .clock import Clock, IdleWait
from .connection import BODY, HEADERS, ClientDisconnected, Connection, SlowClient
from .http1 import FastPath
from .problems import problem_bytes, status_of
from .request_body import guard_body
from .supervisor import Supervisor

__all__ = ["ClientDisconnected", "GreenWorker"]

#: accept() errors that concern one connection only: try the next one at once.
_ACCEPT_RETRY = {errno.EAGAIN, errno.EWOULDBLOCK, errno.ECONNABORTED, errno.EPROTO, errno.EINTR}
#: accept() errors from resource exhaustion: back off a little, then try again.
_ACCEPT_BACKOFF = {errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM}
#: The collector's thresholds once the app is loaded (CPython's: 700, 10, 10). Nearly every object a request
#: makes dies by reference count, so a young collection every 700 allocations mostly walks survivors of the
#: moment (open requests, journal changes) and promotes them; job records live for seconds, so the old
#: generation filled and was walked whole (10-50 ms for 10,000 records) several times a second under load.
#: Measured in-process (20,000 POST /v1/jobs, sqlite): ~280 young and 3 full collections → 4 and 1.
_GC_THRESHOLDS = (7000, 20, 100)


def _fresh_hub() -> None:
    """Give this forked process its own hub; one created in the arbiter would share the arbiter's epoll fd."""
    if not pool_core.reinit_after_fork():
        print(
            "greenpool: green threads were started in the arbiter before fork (preload_app?); they do not run "
            "in the worker: start them when the app is loaded in the worker instead",
            file=sys.stderr,
        )


def _read_limits() -> tuple[float, float, float]:
    """(header_timeout, body_timeout, send_timeout) from the `GREENPOOL_*` configuration (defaults if it is
    invalid: the app refuses to load with that error anyway)."""
    try:
        config = Config.from_env()
    except ConfigError:
        config = Config()
    return config.header_timeout, config.body_timeout, config.send_timeout


class _ListenerName:
    """What `AsyncWorker.handle` needs of a listener: its address, kept after the listener is closed."""

    __slots__ = ("_name",)

    def __init__(self, name: Any) -> None:
        self._name = name

    def getsockname(self) -> Any:
        """The listener's address."""
        return self._name


class GreenWorker(AsyncWorker):
    """A gunicorn worker running listeners, accept loops and connections as pool_core green threads."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._connections: set[pool_core.GreenThread] = set()
        self._clock = Clock()
        self._supervisor = Supervisor(self)
        self._keepalive = 0.0
        self._slots = pool_core.Semaphore(max(1, self.worker_connections))  # creating it needs no hub
        self._draining = False
        self._header_timeout: float | None = None
        self._body_timeout: float | None = None
        self._send_timeout: float | None = None
        self._fast: FastPath | None = None

    # -- process setup and signals ---------------------------------------------------------------
    def init_process(self) -> None:
        """Refuse HTTP/2, set up this process's hub, then let gunicorn load the app and call `run`."""
        if "h2" in (self.cfg.http_protocols or ()):
            raise RuntimeError("GreenWorker serves HTTP/1.x only: remove h2 from http_protocols")
        _fresh_hub()
        logs.buffer_lines()  # the supervisor flushes them every tick
        self._header_timeout, self._body_timeout, self._send_timeout = _read_limits()
        super().init_process()

    def handle_quit(self, sig: int, frame: FrameType | None) -> None:
        """SIGQUIT/SIGINT: drain like SIGTERM (one arriving during the drain ends it now); flags only."""
        self._supervisor.quit_signals += 1
        self.alive = False

    def handle_usr1(self, sig: int, frame: FrameType | None) -> None:
        """SIGUSR1: reopen log files, from the supervisor (a handler may interrupt a green thread anywhere)."""
        self._supervisor.reopen_logs = True

    def handle_abort(self, sig: int, frame: FrameType | None) -> None:
        """SIGABRT (the arbiter saw no heartbeat for `timeout`): log where the hub is blocked, then exit."""
        self.alive = False
        stack = "".join(traceback.format_stack(frame)) if frame is not None else "(unknown)\n"
        self.log.critical(
            "Worker aborted: no heartbeat for %ss, the pool_core hub was blocked by a green thread "
            "calling blocking code. It was running:\n%s",
            self.cfg.timeout,
            stack,
        )
        try:
            self.cfg.worker_abort(self)
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(1)  # SystemExit would be caught by the green thread that the signal interrupted

    # -- the main loop ---------------------------------------------------------------------------
    def run(self) -> None:
        """Start an accept loop per listener, supervise until told to stop, then drain and return."""
        gc.collect()
        gc.freeze()  # the app and its imports live as long as the process: later full collections skip them
        gc.set_threshold(*_GC_THRESHOLDS)
        self._keepalive = float(self.cfg.keepalive or 0)
        self._clock.start()
        refusal = FastPath.refusal(self.cfg, self.log)
        if refusal is None:
            self._fast = FastPath(self.cfg, self.wsgi)
        else:
            self.log.info("HTTP fast path off (%s needs gunicorn's request loop)", refusal)
        listeners = [self._listener(s.sock) for s in self.sockets]
        acceptors = [
            pool_core.spawn(self._accept_loop, listener, _ListenerName(listener.getsockname()))
            for listener in listeners
        ]
        self.log.info(
            "GreenWorker serving on %s (worker_connections=%s, keepalive=%ss)",
            ", ".join(str(s) for s in self.sockets),
            self.worker_connections,
            self.cfg.keepalive,
        )
        self._supervisor.supervise()
        self._draining = True
        self._supervisor.drain(acceptors, listeners, self._connections, self._clock.drain)

    def _listener(self, sock: Any) -> GreenSocket:
        """A green listener on gunicorn's socket; with TLS configured, a GreenSSLSocket whose accepted
        connections handshake on their first read (in their own green thread, bounded by `keepalive`)."""
        listener = GreenSocket(sock)
        if not self.cfg.is_ssl:
            return listener
        return wrap_ssl(
            listener,
            ssl_context(self.cfg),
            server_side=True,
            do_handshake_on_connect=False,
            suppress_ragged_eofs=self.cfg.suppress_ragged_eofs,
        )

    # -- accepting and serving connections -------------------------------------------------------
    def _accept_loop(self, listener: GreenSocket, name: _ListenerName) -> None:
        """Accept connections while alive, each served by its own green thread, at most
        `worker_connections` at once (with none free, stop accepting until one ends)."""
        slots = self._slots
        while self.alive:
            slots.acquire()
            try:
                client, addr = listener.accept()
            except OSError as exc:
                slots.release()
                if not self.alive:
                    return
                if exc.errno in _ACCEPT_RETRY:
                    continue
                if exc.errno in _ACCEPT_BACKOFF:
                    self.log.error("accept() failed (%s): backing off", exc)
                    pool_core.sleep(0.1)
                    continue
                self.log.exception("accept() failed")
                pool_core.sleep(0.1)
                continue
            except BaseException:
                slots.release()
                raise
            if type(client) is GreenSocket:
                client = Connection(client)
                client.send_timeout = self._send_timeout
                client.limit(HEADERS, self._header_timeout)  # the first request's headers: from the accept
            conn = pool_core.spawn(self.handle, name, client, addr)
            self._connections.add(conn)
            conn.link(self._connection_ended)

    def _connection_ended(self, conn: pool_core.GreenThread) -> None:
        """Free the connection's slot (a link: runs in the connection's green thread as it ends)."""
        self._connections.discard(conn)
        self._slots.release()

    def handle(self, listener: Any, client: Any, addr: Any) -> None:
        """Serve a connection: plain-TCP requests through the fast path (`http1`) while they are plain
        ones, the rest — and every request when the configuration needs it — through gunicorn's loop."""
        fast = self._fast
        if fast is None or type(client) is not Connection:
            super().handle(listener, client, addr)
            return
        try:
            rest = fast.serve(self, client, addr, listener.getsockname())
        except OSError as exc:
            rest = None
            if exc.errno in (errno.EPIPE, errno.ECONNRESET, errno.ENOTCONN):
                self.log.debug("Ignoring %s", errno.errorcode.get(exc.errno, exc.errno))
            else:
                self.log.exception("Socket error processing request.")
        except BaseException as exc:
            rest = None
            self.handle_error(None, client, addr, exc)
        if rest is None:
            util.close(client)
            return
        client.unread(rest)
        super().handle(listener, client, addr)

    # -- what both request paths do around a request (the fast path calls these; see http1) ---------------
    def count_request(self) -> bool:
        """Count a request against `max_requests` (reaching it starts the drain); False when this request's
        connection must close after it (not alive any more, or keep-alive off)."""
        self.nr += 1
        if self.nr >= self.max_requests and self.alive:
            self.log.info("Autorestarting worker after current request.")
            self.alive = False
        return self.alive and self._keepalive > 0

    def request_started(self, sock: Any) -> None:
        """A request's head is in: its body has `body_timeout`, and the clock gives a request still running
        after a moment a watcher that notices its client leaving (`ClientDisconnected`)."""
        if isinstance(sock, Connection):
            sock.limit(BODY, self._body_timeout)
            self._clock.request_started(sock)

    def request_ended(self, sock: Any) -> None:
        """Undo `request_started`: stop watching, send a held write, back to the keep-alive wait; when this
        request used up `max_requests`, wake the supervisor so that the drain starts at once."""
        if isinstance(sock, Connection):
            self._clock.request_ended(sock)
            sock.unwatch()
            with contextlib.suppress(OSError):  # the client left: the next read notices and closes
                sock.flush()
            sock.idle(self._header_timeout)
        if not self.alive and not self._draining:
            self._supervisor.wake()

    def fair_turn(self) -> None:
        """Between two requests of a connection: when other green threads are ready, let them run first.

        A connection whose next request is already there (pipelining, or a busy client) would otherwise be
        served again at once. Under load this makes busy connections take turns round-robin: each finds its
        next request waiting when its turn comes, without parking on epoll, and every request waits about
        one round — a steady latency instead of one or two rounds depending on where it fell in the pass."""
        hub = pool_core.get_hub()
        if hub.ready:
            hub.yield_now()

    def handle_request(self, listener_name: Any, req: Any, sock: Any, addr: Any) -> bool:
        """gunicorn's (the path for requests the fast path hands over), with `request_started`/`ended` around
        it; the response's first write (status line and headers) is held and sent with the body, and the
        body's reader is guarded (`request_body`)."""
        guard_body(req)
        self.request_started(sock)
        if isinstance(sock, Connection):
            sock.hold_first_write()
        try:
            keep_alive = super().handle_request(listener_name, req, sock, addr)
        finally:
            self.request_ended(sock)
        self.fair_turn()
        return keep_alive

    def timeout_ctx(self) -> IdleWait:
        """Bound the wait for the next request by `keepalive` (0 once draining: only what already arrived)."""
        if self._draining:
            return self._clock.wait(0.0)
        return self._clock.wait(self._keepalive or None)

    def handle_error(self, req: Any, client: Any, addr: Any, exc: BaseException) -> None:
        """Like gunicorn's, except that the answer is problem+json and that a connection whose client left, or
        killed at the end of a drain, is closed quietly."""
        if isinstance(exc, ClientDisconnected):
            self.log.debug("Client %s went away before its response was complete", addr)
            return
        if isinstance(exc, SlowClient):
            self.log.info("Client %s too slow, connection closed: %s", addr, exc)
            if exc.phase == BODY and isinstance(client, Connection) and not client.wrote:
                with contextlib.suppress(OSError, SlowClient):  # a client that reads nothing: just close
                    client.sendall(problem_bytes(408, "Request Timeout", str(exc)))
            return
        if isinstance(exc, pool_core.GreenletExit):
            self.log.debug("Connection from %s closed at the end of the grace period", addr)
            return
        status, title = status_of(exc)
        if status < 500:
            self.log.warning("Invalid request from ip=%s: %s", (addr or ("",))[0], exc)
        else:
            self.log.exception("Error handling request %s", getattr(req, "uri", "(no URI read)"))
        with contextlib.suppress(OSError, SlowClient):
            client.sendall(problem_bytes(status, title, str(exc) if status < 500 else ""))
