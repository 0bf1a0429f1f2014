"""GreenWorker: a gunicorn worker whose listeners, accept loops and connections are pool_core green threads.

Usage: ``gunicorn -k service.worker.GreenWorker service.app:app``. The falcon app, the job pool and every
open connection share one pool_core hub: one worker process is one pool.

How it works (built on gunicorn's ``AsyncWorker``, which supplies the HTTP/1.1 parsing, keep-alive loop,
``max_requests`` counting, and streaming of iterator responses — chunked when no length is known):

* ``init_process`` gives the forked process a fresh hub before the app is loaded (and refuses HTTP/2).
* TLS (``--certfile``/``--keyfile``) uses ``pool_core.sockets.wrap_ssl``: each connection handshakes in its
  own green thread on its first read, bounded like any request read by ``keepalive``.
* ``run`` spawns one accept loop per listener. Each loop takes a slot of a ``Semaphore(worker_connections)``
  before it accepts, so with every slot taken it stops accepting until a connection ends. Every accepted
  connection is served by its own green thread (``pool_core.spawn``, never the job pool).
* A client that leaves mid-response is noticed at the next write (gunicorn's ``respiter.close()`` runs) —
  and, for a request still running after 50 ms, at once: a watcher green thread parked on the socket sees
  the end of stream (or a reset) and raises ``ClientDisconnected`` (a ``GreenletExit``) where the request
  is parked, so idle streams and long-polls are released without waiting for their next write. The
  watcher steps aside when the app reads the request body, and on a pipelined request.
* The process's main greenlet is the supervisor: every tick (at most 1 s, at most ``timeout/4``) it calls
  ``notify()`` (gunicorn's heartbeat), checks ``alive``, the parent pid and signal flags. It waits on
  gunicorn's signal wake-up pipe, so a signal is acted on at once. A tick that comes late means the hub
  was blocked (a green thread called something blocking): that is logged; if the block outlasts
  ``timeout`` the arbiter aborts the worker and the abort logs the stack of the blocking code.
* Slow clients cannot pin a connection (slowloris): on plain-TCP connections a request's line and headers
  must arrive within ``GREENPOOL_HEADER_TIMEOUT`` seconds of the accept (first request) or of its first
  byte (later ones, after at most ``keepalive`` idle), and its body within ``GREENPOOL_BODY_TIMEOUT``
  seconds of the end of its headers, however slowly the bytes keep coming. A request still short of its
  headers is dropped (closed, nothing sent); one short of its body gets ``408`` (problem+json) and is
  closed. TLS connections are bounded by ``keepalive`` only.
* Signal handlers only set flags (they interrupt arbitrary green threads, so they must not switch or
  raise); the supervisor does the work.
* Drain — on SIGTERM, SIGQUIT, SIGINT, ``max_requests`` reached, or the parent gone: close the listeners
  (stop accepting), start ``service.lifecycle``'s drain callbacks, close connections idle between
  requests at once (their keep-alive wait ends early), let requests and streams in flight finish — until
  the grace period (``graceful_timeout``, minus a small margin to clean up before the arbiter's SIGKILL)
  ends; then kill what is left (``GreenletExit``: iterator ``close()`` and ``finally`` blocks still run)
  and return, so the process exits 0. A SIGQUIT/SIGINT arriving during the drain (e.g. gunicorn's "quick
  shutdown" after a SIGTERM) ends the grace period at once.
"""

from __future__ import annotations

import contextlib
import errno
import gc
import json
import math
import os
import socket
import sys
import time
import traceback
from collections.abc import Iterable
from types import FrameType
from typing import Any

import greenlet
from gunicorn import util
from gunicorn.sock import ssl_context
from gunicorn.workers.base_async import AsyncWorker

import pool_core
from pool_core.sockets import GreenSocket, wrap_ssl
from service import lifecycle
from service.config import Config, ConfigError
from service.server.http1 import FastPath

__all__ = ["ClientDisconnected", "GreenWorker"]

#: A request still running after this many seconds gets a watcher that notices its client leaving.
_WATCH_AFTER = 0.05
#: How often the worker's clock runs (`GreenWorker._clock`), and how often it looks at keep-alive waits.
_TICK = 0.025
_IDLE_TICK = 0.25

#: Connection phases whose reads are bounded by a deadline (`_Connection.limit`).
_HEADERS, _BODY = "headers", "body"

#: accept() errors that concern one connection only: try the next one at once.
_ACCEPT_RETRY = {errno.EAGAIN, errno.EWOULDBLOCK, errno.ECONNABORTED, errno.EPROTO, errno.EINTR}
#: accept() errors from resource exhaustion: back off a little, then try again.
_ACCEPT_BACKOFF = {errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM}


def _fresh_hub() -> None:
    """Give this forked process its own hub; one created in the arbiter would share the arbiter's epoll fd."""
    if not pool_core.reinit_after_fork():
        print(
            "greenpool: green threads were started in the arbiter before fork (preload_app?); they do not run "
            "in the worker: start them when the app is loaded in the worker instead",
            file=sys.stderr,
        )


class ClientDisconnected(pool_core.GreenletExit):
    """Raised in a request's green thread, wherever it is parked, when its client closed the connection (or
    reset it) while the app was still working on the response: `finally` blocks and the response
    iterator's `close()` run, and the connection is closed quietly. Catch it only to clean up."""


class SlowClient(BaseException):
    """Raised by a connection's read when its request's headers (or body) did not arrive in time; not an
    Exception, so that the app passes it through untouched to `GreenWorker.handle_error`."""

    def __init__(self, phase: str, seconds: float) -> None:
        super().__init__(f"the request {phase} did not arrive within {seconds:g} s")
        self.phase = phase
        self.seconds = seconds


def _read_limits() -> tuple[float, float]:
    """(header_timeout, body_timeout) from the `GREENPOOL_*` configuration (defaults if it is invalid: the
    app refuses to load with that error anyway)."""
    try:
        config = Config.from_env()
    except ConfigError:
        config = Config()
    return config.header_timeout, config.body_timeout


class _Connection(GreenSocket):
    """An accepted plain-TCP connection that can watch for its client leaving while the app works, and whose
    reads are bounded by the deadline of the request phase it is in (headers, body) — see `limit`.

    The watcher is a green thread parked on the socket's readability; it stops at the connection's first
    read (so the app can still read the request body) and on data (a pipelined request: nothing to see)."""

    _watcher: pool_core.GreenThread | None = None
    _phase: str = ""  # "" idle: the first byte read starts the headers phase
    _deadline: float | None = None
    _seconds: float | None = None
    _header_timeout: float | None = None
    wrote = False  # something was sent since the current request began
    _hold_first = False
    _held: bytes | None = None
    _pushback = b""

    def limit(self, phase: str, seconds: float | None) -> None:
        """Enter `phase` (`_HEADERS`, `_BODY`, or "" idle): its reads must all be done within `seconds`."""
        self._phase = phase
        self._deadline = None if seconds is None else time.monotonic() + seconds
        self._seconds = seconds

    def idle(self, header_timeout: float | None) -> None:
        """Between requests: wait freely (the keep-alive wait bounds it); the first byte starts the headers."""
        self.limit("", None)
        self._header_timeout = header_timeout
        self.wrote = False

    def _bounded(self, read: Any, *args: Any) -> Any:
        """`read(*args)` (a GreenSocket read), raising SlowClient once the phase's deadline passes."""
        saved = self.gettimeout()
        self.settimeout(max(1e-6, self._deadline - time.monotonic()))  # type: ignore[operator]
        try:
            return read(*args)
        except TimeoutError:
            raise SlowClient(self._phase, self._seconds) from None
        finally:
            self.settimeout(saved)

    def sendall(self, data: Any, flags: int = 0) -> None:
        """GreenSocket.sendall, noting that the response has begun. While a request is handled, its first
        write (gunicorn's status line and headers) is held and sent with the next one, so a response costs one
        send and one TCP segment, not two; `flush` sends a write still held when the response ends."""
        if self._hold_first and not self.wrote:
            self.wrote = True
            self._held = bytes(data)
            return
        self.wrote = True
        if self._held is not None:
            data, self._held = self._held + bytes(data), None
        super().sendall(data, flags)

    def sendfile(self, file: Any, offset: int = 0, count: int | None = None) -> int:
        """GreenSocket.sendfile, after any held write (the headers must go first)."""
        self.flush()
        return super().sendfile(file, offset, count)

    def hold_first_write(self) -> None:
        """Start a response: hold its first write until the second (see `sendall`)."""
        self._hold_first = True

    def flush(self) -> None:
        """Send the held write, if any, and stop holding."""
        self._hold_first = False
        if self._held is not None:
            held, self._held = self._held, None
            super().sendall(held)

    def watch(self, request: pool_core.GreenThread) -> None:
        """Start watching on behalf of `request` (the connection's green thread)."""
        if self._watcher is None:
            self._watcher = pool_core.spawn(self._watch, request)

    def unwatch(self) -> None:
        """Stop watching (harmless when not watching)."""
        watcher, self._watcher = self._watcher, None
        if watcher is not None and not watcher.dead:
            watcher.kill()

    def unread(self, data: bytes) -> None:
        """Push bytes back: the next reads return them before reading the socket again (the fast path hands a
        request it read to gunicorn's parser this way)."""
        self._pushback = data + self._pushback

    def _take_pushback(self, size: int) -> bytes:
        data, self._pushback = self._pushback[:size], self._pushback[size:]
        if self._phase == "" and self._header_timeout is not None:
            self.limit(_HEADERS, self._header_timeout)
        return data

    def recv(self, bufsize: int, flags: int = 0) -> bytes:
        """GreenSocket.recv, after stopping the watcher (one reader per socket may wait at a time), within
        the current phase's deadline."""
        if self._pushback:
            return self._take_pushback(bufsize)
        if self._watcher is not None:
            self.unwatch()
        if self._deadline is not None:
            return self._bounded(super().recv, bufsize, flags)
        data = super().recv(bufsize, flags)
        if data and self._phase == "" and self._header_timeout is not None:
            self.limit(_HEADERS, self._header_timeout)
        return data

    def recv_into(self, buffer: Any, nbytes: int = 0, flags: int = 0) -> int:
        """GreenSocket.recv_into, after stopping the watcher, within the current phase's deadline."""
        if self._pushback:
            data = self._take_pushback(nbytes or len(buffer))
            buffer[: len(data)] = data
            return len(data)
        if self._watcher is not None:
            self.unwatch()
        if self._deadline is not None:
            return self._bounded(super().recv_into, buffer, nbytes, flags)
        count = super().recv_into(buffer, nbytes, flags)
        if count and self._phase == "" and self._header_timeout is not None:
            self.limit(_HEADERS, self._header_timeout)
        return count

    def _watch(self, request: pool_core.GreenThread) -> None:
        """Wait until the socket is readable; if that is the end of the stream (or a reset), kill `request`."""
        try:
            pool_core.get_hub().wait_read(self.fileno())
        except (OSError, ValueError, RuntimeError):  # closed under us, or the request itself waits to read
            return
        finally:
            if self._watcher is pool_core.getcurrent():
                self._watcher = None
        try:
            gone = self.fd.recv(1, socket.MSG_PEEK) == b""
        except BlockingIOError:
            gone = False
        except OSError:
            gone = True
        if gone and not request.dead:
            request.kill(ClientDisconnected())


def _request_timeout(detail: str) -> bytes:
    """A complete `408 Request Timeout` problem+json response that closes the connection."""
    body = json.dumps({"type": "about:blank", "title": "Request Timeout", "status": 408, "detail": detail})
    head = (
        "HTTP/1.1 408 Request Timeout\r\nContent-Type: application/problem+json\r\n"
        f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
    )
    return (head + body).encode()


class _ListenerName:
    """What `AsyncWorker.handle` needs of a listener: its address, kept after the listener is closed."""

    __slots__ = ("_name",)

    def __init__(self, name: Any) -> None:
        self._name = name

    def getsockname(self) -> Any:
        """The listener's address."""
        return self._name


class KeepAliveExpired(BaseException):
    """Thrown by the worker's clock into a connection still waiting for its next request when its keep-alive
    time is up (or the worker drains): the wait ends and the connection closes."""


class _IdleWait:
    """The keep-alive wait for a connection's next request (`GreenWorker.timeout_ctx`). It registers its
    deadline with the worker's clock, which ends it with `KeepAliveExpired`; that ending is not an error."""

    __slots__ = ("_idle", "_deadline", "_greenlet")

    def __init__(self, idle: dict[greenlet.greenlet, float], deadline: float | None) -> None:
        self._idle = idle
        self._deadline = deadline
        self._greenlet = None

    def __enter__(self) -> _IdleWait:
        if self._deadline is not None:
            self._greenlet = greenlet.getcurrent()
            self._idle[self._greenlet] = self._deadline
        return self

    def __exit__(self, typ: Any, value: Any, tb: Any) -> bool:
        if self._greenlet is not None:
            self._idle.pop(self._greenlet, None)
        return typ is KeepAliveExpired


class GreenWorker(AsyncWorker):
    """A gunicorn worker running listeners, accept loops and connections as pool_core green threads."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._connections: set[pool_core.GreenThread] = set()
        self._idle: dict[greenlet.greenlet, float] = {}  # connections in the keep-alive wait: deadline
        self._busy: dict[_Connection, tuple[float, Any]] = {}  # requests not yet watched: start, green thread
        self._next_idle_check = 0.0
        self._keepalive = 0.0
        self._slots = pool_core.Semaphore(max(1, self.worker_connections))  # creating it needs no hub
        self._draining = False
        self._quit_signals = 0
        self._reopen_logs = False
        self._header_timeout: float | None = None
        self._body_timeout: float | None = None
        self._fast: FastPath | None = None

    # -- process setup and signals ---------------------------------------------------------------
    def init_process(self) -> None:
        """Refuse HTTP/2, set up this process's hub, then let gunicorn load the app and call `run`."""
        if "h2" in (self.cfg.http_protocols or ()):
            raise RuntimeError("GreenWorker serves HTTP/1.x only: remove h2 from http_protocols")
        _fresh_hub()
        self._header_timeout, self._body_timeout = _read_limits()
        super().init_process()

    def handle_quit(self, sig: int, frame: FrameType | None) -> None:
        """SIGQUIT/SIGINT: drain like SIGTERM (one arriving during the drain ends it now); flags only."""
        self._quit_signals += 1
        self.alive = False

    def handle_usr1(self, sig: int, frame: FrameType | None) -> None:
        """SIGUSR1: reopen log files, from the supervisor (a handler may interrupt a green thread anywhere)."""
        self._reopen_logs = True

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
        self._keepalive = float(self.cfg.keepalive or 0)
        pool_core.get_hub().call_later(_TICK, self._clock)
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
        self._supervise()
        self._drain(acceptors, listeners)

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

    def _tick(self) -> float:
        """Seconds between heartbeats: well within the arbiter's timeout, at most one second."""
        timeout = self.cfg.timeout
        return max(0.05, min(1.0, timeout / 4)) if timeout else 1.0

    def _supervise(self) -> None:
        """Heartbeat, parent check and signal flags, until `alive` turns False."""
        tick = self._tick()
        last = time.monotonic()
        while self.alive:
            self.notify()
            if self.ppid != os.getppid():
                self.log.info("Parent changed, shutting down: %s", self)
                self.alive = False
                break
            self._handle_flags()
            self._wait_signal(tick)
            now = time.monotonic()
            if now - last > tick + max(1.0, tick):
                self.log.warning(
                    "pool_core hub was blocked for about %.1fs (heartbeat late): a green thread is calling "
                    "blocking code; the arbiter kills the worker after %ss",
                    now - last - tick,
                    self.cfg.timeout,
                )
            last = now

    def _handle_flags(self) -> None:
        """Act on what the signal handlers recorded."""
        if self._reopen_logs:
            self._reopen_logs = False
            self.log.reopen_files()

    def _wait_signal(self, timeout: float) -> None:
        """Park until a signal arrives (gunicorn's wake-up pipe) or `timeout` seconds pass."""
        fd = self.PIPE[0]
        try:
            pool_core.get_hub().wait_read(fd, timeout)
        except TimeoutError:
            return
        try:
            while os.read(fd, 256):
                pass
        except BlockingIOError:
            pass

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
                client = _Connection(client)
                client.limit(_HEADERS, self._header_timeout)  # the first request's headers: from the accept
            conn = pool_core.spawn(self.handle, name, client, addr)
            self._connections.add(conn)
            conn.link(self._connection_ended)

    def _connection_ended(self, conn: pool_core.GreenThread) -> None:
        """Free the connection's slot (a link: runs in the connection's green thread as it ends)."""
        self._connections.discard(conn)
        self._slots.release()

    def handle(self, listener: Any, client: Any, addr: Any) -> None:
        """Serve a connection: plain-TCP requests through the fast path (`service.http1`) while they are plain
        ones, the rest — and every request when the configuration needs it — through gunicorn's loop."""
        fast = self._fast
        if fast is None or type(client) is not _Connection:
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

    # -- what both request paths do around a request (the fast path calls these; see service.http1) -------
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
        after `_WATCH_AFTER` a watcher that notices its client leaving (`ClientDisconnected`)."""
        if isinstance(sock, _Connection):
            sock.limit(_BODY, self._body_timeout)
            self._busy[sock] = (time.monotonic(), pool_core.getcurrent())

    def request_ended(self, sock: Any) -> None:
        """Undo `request_started`: stop watching, send a held write, back to the keep-alive wait; when this
        request used up `max_requests`, wake the supervisor so that the drain starts at once."""
        if isinstance(sock, _Connection):
            self._busy.pop(sock, None)
            sock.unwatch()
            with contextlib.suppress(OSError):  # the client left: the next read notices and closes
                sock.flush()
            sock.idle(self._header_timeout)
        if not self.alive and not self._draining:
            with contextlib.suppress(OSError):
                os.write(self.PIPE[1], b".")

    def _clock(self) -> None:
        """Every `_TICK`, in the hub: watch requests running for `_WATCH_AFTER`, and (every `_IDLE_TICK`, or
        every tick while draining) end the keep-alive waits whose time is up. One timer for all connections
        costs less than two per request, and these deadlines need no better precision."""
        hub = pool_core.get_hub()
        hub.call_later(_TICK, self._clock)
        now = time.monotonic()
        busy = self._busy
        if busy:
            late = now - _WATCH_AFTER
            for sock in [sock for sock, (started, _request) in busy.items() if started <= late]:
                sock.watch(busy.pop(sock)[1])
        if self._idle and (self._draining or now >= self._next_idle_check):
            self._next_idle_check = now + _IDLE_TICK
            self._expire_idle(now)

    def _expire_idle(self, now: float) -> None:
        """End the keep-alive waits whose deadline is `now` or earlier (a wait with a kill or another
        exception already on its way is left to it)."""
        hub = pool_core.get_hub()
        for g in [g for g, deadline in self._idle.items() if deadline <= now]:
            if hub.pending_exception(g) is None:
                del self._idle[g]
                hub.throw(g, KeepAliveExpired())

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
        it; the response's first write (status line and headers) is held and sent with the body."""
        self.request_started(sock)
        if isinstance(sock, _Connection):
            sock.hold_first_write()
        try:
            keep_alive = super().handle_request(listener_name, req, sock, addr)
        finally:
            self.request_ended(sock)
        self.fair_turn()
        return keep_alive

    def timeout_ctx(self) -> _IdleWait:
        """Bound the wait for the next request by `keepalive` (0 once draining: only what already arrived)."""
        if self._draining:
            return _IdleWait(self._idle, 0.0)
        keepalive = self._keepalive
        return _IdleWait(self._idle, time.monotonic() + keepalive if keepalive else None)

    def handle_error(self, req: Any, client: Any, addr: Any, exc: BaseException) -> None:
        """Like gunicorn's, except that a connection whose client left, or killed at the end of a drain, is
        closed quietly."""
        if isinstance(exc, ClientDisconnected):
            self.log.debug("Client %s went away before its response was complete", addr)
            return
        if isinstance(exc, SlowClient):
            self.log.info("Client %s too slow, connection closed: %s", addr, exc)
            if exc.phase == _BODY and isinstance(client, _Connection) and not client.wrote:
                with contextlib.suppress(OSError):
                    client.sendall(_request_timeout(str(exc)))
            return
        if isinstance(exc, pool_core.GreenletExit):
            self.log.debug("Connection from %s closed at the end of the grace period", addr)
            return
        super().handle_error(req, client, addr, exc)

    # -- draining --------------------------------------------------------------------------------
    def _margin(self) -> float:
        """Time kept back from `graceful_timeout` to kill and clean up before the arbiter's SIGKILL."""
        return min(1.0, float(self.cfg.graceful_timeout) * 0.1)

    def _drain(self, acceptors: Iterable[pool_core.GreenThread], listeners: Iterable[GreenSocket]) -> None:
        """Stop accepting, let connections and drain callbacks finish within the grace period, kill the rest."""
        margin = self._margin()
        grace = max(0.0, self.cfg.graceful_timeout - margin)
        deadline = time.monotonic() + grace
        self._draining = True
        for acceptor in acceptors:
            acceptor.kill()
        for listener in listeners:
            with contextlib.suppress(OSError):
                listener.close()
        if self._quit_signals:
            try:
                self.cfg.worker_int(self)
            except Exception:
                self.log.exception("Exception in worker_int hook")
        hooks = lifecycle.drain(grace)
        self._expire_idle(math.inf)
        self.log.info(
            "Draining (pid: %s): %d connection(s), %d drain callback(s), up to %.1fs",
            self.pid,
            len(self._connections),
            len(hooks),
            grace,
        )
        quits = self._quit_signals
        while True:
            self.notify()
            hooks = lifecycle.drain(grace)
            if not self._connections and all(hook.dead for hook in hooks):
                self.log.info("Drained (pid: %s)", self.pid)
                return
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                self.log.warning(
                    "Worker graceful timeout (pid: %s): killing %d connection(s), %d drain callback(s)",
                    self.pid,
                    len(self._connections),
                    sum(not hook.dead for hook in hooks),
                )
                break
            if self._quit_signals > quits:
                self.log.info("Quit signal during the drain: stopping now (pid: %s)", self.pid)
                break
            self._handle_flags()
            self._wait_signal(min(0.1, remaining))
        self._kill_all([*self._connections, *hooks], margin / 2)

    def _kill_all(self, threads: list[pool_core.GreenThread], cleanup: float) -> None:
        """Kill `threads`, then give their cleanup (iterator close(), finally blocks) up to `cleanup` seconds."""
        for thread in threads:
            if not thread.dead:
                thread.kill()
        end = time.monotonic() + cleanup
        while any(not thread.dead for thread in threads) and time.monotonic() < end:
            pool_core.sleep(0.01)
