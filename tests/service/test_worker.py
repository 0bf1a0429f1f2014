"""GreenWorker under a real gunicorn: keep-alive, streaming, disconnects, concurrency, limits, drain, heartbeat."""

from __future__ import annotations

import contextlib
import http.client
import signal
import socket
import ssl
import struct
import subprocess
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
import requests
from tools import needs, which

import pool_core

if TYPE_CHECKING:
    from conftest import Server

Factory = Callable[..., "Server"]


# -- helpers ------------------------------------------------------------------------------------------
def send_get(address: tuple[str, int], path: str, *, close: bool = True, timeout: float = 15.0) -> socket.socket:
    """Open a connection and send `GET path` (HTTP/1.1); return the socket."""
    sock = socket.create_connection(address, timeout=timeout)
    extra = "Connection: close\r\n" if close else ""
    sock.sendall(f"GET {path} HTTP/1.1\r\nHost: test\r\n{extra}\r\n".encode())
    return sock


def read_to_eof(sock: socket.socket) -> bytes:
    """Everything the server sends until it closes the connection."""
    chunks = []
    while data := sock.recv(65536):
        chunks.append(data)
    return b"".join(chunks)


def fetch(address: tuple[str, int], path: str) -> tuple[float, bytes]:
    """(seconds taken, raw response) of one `GET path` on its own connection."""
    start = time.monotonic()
    with send_get(address, path) as sock:
        data = read_to_eof(sock)
    return time.monotonic() - start, data


def read_until(sock: socket.socket, marker: bytes, buf: bytes = b"") -> bytes:
    """Read until `marker` is in what was received; return all of it."""
    while marker not in buf:
        data = sock.recv(65536)
        if not data:
            raise AssertionError(f"connection closed before {marker!r}; got {buf!r}")
        buf += data
    return buf


def wait_for(predicate: Callable[[], bool], timeout: float, what: str) -> None:
    """Poll `predicate` every 50 ms until true; fail after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def refused(address: tuple[str, int]) -> bool:
    """True if a new TCP connection to `address` is refused."""
    try:
        socket.create_connection(address, timeout=1).close()
    except ConnectionRefusedError:
        return True
    except OSError:
        return False
    return False


def pid_of(body: bytes) -> int:
    """The worker pid at the end of a "hello <pid>"/"slow <pid>" body."""
    return int(body.rsplit(b" ", 1)[1])


# -- basics -------------------------------------------------------------------------------------------
@pytest.mark.timeout(30)
def test_get_works(gunicorn_server: Server) -> None:
    resp = requests.get(gunicorn_server.url + "/hello", timeout=5)
    assert resp.status_code == 200
    assert resp.text.startswith("hello ")
    assert resp.headers["Content-Length"] == str(len(resp.content))


@pytest.mark.timeout(30)
def test_keepalive_serves_requests_on_one_connection_then_closes_it_when_idle(gunicorn_factory: Factory) -> None:
    server = gunicorn_factory("--keep-alive", "1")
    conn = http.client.HTTPConnection(server.host, server.port, timeout=5)
    conn.request("GET", "/hello")
    first = conn.getresponse()
    assert first.status == 200 and first.getheader("Connection") == "keep-alive"
    first.read()
    sock = conn.sock
    local = sock.getsockname()
    conn.request("GET", "/hello")
    second = conn.getresponse()
    assert second.status == 200 and second.read().startswith(b"hello ")
    assert conn.sock is sock and sock.getsockname() == local  # the same TCP connection
    start = time.monotonic()
    assert sock.recv(1) == b""  # idle past keepalive: the server closes it
    assert time.monotonic() - start < 3
    conn.close()


# -- streaming ----------------------------------------------------------------------------------------
@pytest.mark.timeout(30)
def test_iterator_response_is_chunked_and_written_as_produced(gunicorn_server: Server, tmp_path: Path) -> None:
    marker = tmp_path / "closed"
    start = time.monotonic()
    with send_get(gunicorn_server.address, f"/stream?n=4&pause=0.5&marker={marker}") as sock:
        head = read_until(sock, b"chunk 0")
        first_at = time.monotonic() - start
        rest = read_to_eof(sock)
    total = time.monotonic() - start
    headers, _, body = (head + rest).partition(b"\r\n\r\n")
    assert b"Transfer-Encoding: chunked" in headers
    assert b"Content-Length" not in headers
    assert first_at < 0.4, "the first chunk must arrive before the iterator is exhausted"
    assert total >= 1.4
    assert body == b"".join(b"8\r\nchunk %d\n\r\n" % i for i in range(4)) + b"0\r\n\r\n"
    wait_for(marker.exists, 5, "close() of the finished iterator")
    assert marker.read_text() == "closed after 4 of 4\n"


@pytest.mark.timeout(30)
def test_client_disconnect_mid_stream_closes_the_iterator(gunicorn_server: Server, tmp_path: Path) -> None:
    marker = tmp_path / "closed"
    sock = send_get(gunicorn_server.address, f"/stream?n=400&pause=0.02&marker={marker}")
    read_until(sock, b"chunk 1")
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))  # close with RST
    sock.close()
    wait_for(marker.exists, 5, "close() of the abandoned iterator")
    sent = int(marker.read_text().split()[2])
    assert sent < 400, "the iterator must be closed early, not run to its end"
    assert requests.get(gunicorn_server.url + "/hello", timeout=5).status_code == 200
    assert "Error handling request" not in gunicorn_server.log()


@pytest.mark.timeout(30)
@pytest.mark.parametrize("rst", [False, True], ids=["fin", "rst"])
def test_client_leaving_an_idle_stream_or_a_long_poll_is_noticed_at_once(
    gunicorn_server: Server, tmp_path: Path, rst: bool
) -> None:
    stream_marker, poll_marker = tmp_path / "stream", tmp_path / "poll"
    stream = send_get(gunicorn_server.address, f"/stream?n=2&pause=60&marker={stream_marker}")
    read_until(stream, b"chunk 0")  # now the iterator sleeps for a minute: nothing is written
    poll = send_get(gunicorn_server.address, f"/slow?s=60&marker={poll_marker}")  # the app itself waits
    time.sleep(0.3)
    for sock in (stream, poll):
        if rst:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        sock.close()
    wait_for(lambda: stream_marker.exists() and poll_marker.exists(), 3, "the server to notice the clients left")
    assert stream_marker.read_text() == "closed after 1 of 2\n"
    assert poll_marker.read_text() == "ClientDisconnected\n"
    assert requests.get(gunicorn_server.url + "/hello", timeout=5).status_code == 200
    assert "Error handling request" not in gunicorn_server.log()


@pytest.mark.timeout(30)
def test_a_request_body_read_after_a_while_still_works(gunicorn_server: Server) -> None:
    with socket.create_connection(gunicorn_server.address, timeout=10) as sock:
        sock.sendall(b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 10\r\nConnection: close\r\n\r\n01234")
        time.sleep(0.5)  # the watcher is up by now, waiting on the socket the body still has to come from
        sock.sendall(b"56789")
        response = read_to_eof(sock)
    assert response.startswith(b"HTTP/1.1 200 OK") and response.endswith(b"0123456789")


@pytest.mark.timeout(30)
@pytest.mark.parametrize("length", [True, False], ids=["content-length", "chunked"])
def test_file_wrapper_is_sent_with_sendfile(gunicorn_server: Server, tmp_path: Path, length: bool) -> None:
    payload = bytes(range(256)) * 4096  # 1 MiB: more than a socket buffer, so sendfile has to park
    path = tmp_path / "payload.bin"
    path.write_bytes(payload)
    resp = requests.get(f"{gunicorn_server.url}/file?path={path}&length={int(length)}", timeout=10)
    assert resp.status_code == 200 and resp.content == payload
    assert ("Content-Length" in resp.headers) is length
    assert (resp.headers.get("Transfer-Encoding") == "chunked") is (not length)


@pytest.mark.timeout(40)
@needs("openssl")
def test_tls_with_certfile_and_keyfile(gunicorn_factory: Factory, tmp_path: Path) -> None:
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        [which("openssl"), "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=127.0.0.1",
         "-addext", "subjectAltName=IP:127.0.0.1", "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True, timeout=30,
    )  # fmt: skip
    tls = ssl.create_default_context(cafile=str(cert))
    server = gunicorn_factory("--certfile", str(cert), "--keyfile", str(key), tls=tls)
    with requests.Session() as session:
        first = session.get(server.url + "/hello", verify=str(cert), timeout=5)
        streamed = session.get(server.url + "/stream?n=3&pause=0.1", verify=str(cert), timeout=5)
    assert first.status_code == 200 and first.text.startswith("hello ")
    assert streamed.headers["Transfer-Encoding"] == "chunked" and streamed.text == "chunk 0\nchunk 1\nchunk 2\n"
    with socket.create_connection(server.address, timeout=5) as plain:  # not TLS: refused, and served on
        plain.sendall(b"GET /hello HTTP/1.1\r\nHost: t\r\n\r\n")
        with contextlib.suppress(ConnectionResetError):  # or an error page, never a 200
            assert not read_to_eof(plain).startswith(b"HTTP/1.1 200")
    assert requests.get(server.url + "/hello", verify=str(cert), timeout=5).status_code == 200


# -- concurrency and limits ---------------------------------------------------------------------------
@pytest.mark.timeout(60)
def test_200_slow_requests_are_served_concurrently(gunicorn_server: Server) -> None:
    start = time.monotonic()
    socks = [send_get(gunicorn_server.address, "/slow?s=1") for _ in range(200)]
    responses = [read_to_eof(sock) for sock in socks]
    elapsed = time.monotonic() - start
    for sock in socks:
        sock.close()
    assert all(r.startswith(b"HTTP/1.1 200 OK") and b"slow " in r for r in responses)
    assert elapsed < 3.0, f"200 one-second requests took {elapsed:.2f}s: not concurrent"


@pytest.mark.timeout(30)
def test_worker_connections_caps_concurrent_connections(gunicorn_factory: Factory) -> None:
    server = gunicorn_factory("--worker-connections", "5")
    with ThreadPoolExecutor(6) as executor:
        results = list(executor.map(lambda _: fetch(server.address, "/slow?s=1"), range(6)))
    times = sorted(t for t, _ in results)
    assert all(data.startswith(b"HTTP/1.1 200 OK") for _, data in results)
    assert times[4] < 1.8, f"five connections fit: {times}"
    assert times[5] >= 1.9, f"the sixth must wait for a free slot: {times}"


@pytest.mark.timeout(60)
def test_max_requests_restarts_the_worker_and_the_arbiter_keeps_serving(gunicorn_factory: Factory) -> None:
    server = gunicorn_factory("--max-requests", "5", "--workers", "1")
    pids = []
    for _ in range(12):
        resp = requests.get(server.url + "/hello", timeout=10)
        assert resp.status_code == 200
        pids.append(pid_of(resp.content))
    first = pids[0]
    assert len(set(pids)) >= 2, pids
    # the fixture's readiness probe was the first worker's first request: 4 more reach max_requests
    assert pids[:4] == [first] * 4 and pids.count(first) <= 5, pids
    assert server.proc.poll() is None
    log = server.log()
    assert "Autorestarting worker after current request." in log
    assert "Drained" in log and "Worker graceful timeout" not in log


# -- graceful stop ------------------------------------------------------------------------------------
@pytest.mark.timeout(40)
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGQUIT, signal.SIGINT], ids=lambda s: s.name)
def test_stop_signal_lets_the_in_flight_request_finish(gunicorn_factory: Factory, tmp_path: Path, sig: int) -> None:
    drain_marker = tmp_path / "drain"
    server = gunicorn_factory("--graceful-timeout", "10", env={"GP_TEST_DRAIN_MARKER": str(drain_marker)})
    in_flight = send_get(server.address, "/slow?s=2")
    time.sleep(0.3)  # accepted and running
    server.proc.send_signal(sig)
    wait_for(lambda: refused(server.address), 3, "new connections to be refused")
    response = read_to_eof(in_flight)
    in_flight.close()
    assert response.startswith(b"HTTP/1.1 200 OK") and b"slow " in response
    assert b"Connection: close" in response
    assert server.proc.wait(10) == 0
    assert drain_marker.read_text() == "draining\ndone\n"
    log = server.log()
    assert "Drained" in log and "Worker graceful timeout" not in log


@pytest.mark.timeout(40)
def test_a_request_already_received_is_served_during_the_drain(gunicorn_factory: Factory) -> None:
    server = gunicorn_factory("--graceful-timeout", "10")
    sock = socket.create_connection(server.address, timeout=10)
    sock.sendall(b"GET /slow?s=1 HTTP/1.1\r\nHost: t\r\n\r\nGET /ready HTTP/1.1\r\nHost: t\r\n\r\n")  # pipelined
    time.sleep(0.3)
    server.proc.send_signal(signal.SIGTERM)
    data = read_to_eof(sock)
    sock.close()
    first, _, second = data.partition(b"HTTP/1.1 503")
    assert first.startswith(b"HTTP/1.1 200 OK") and b"slow " in first
    assert second and second.endswith(b"draining") and b"Connection: close" in second
    assert server.proc.wait(10) == 0


@pytest.mark.timeout(40)
def test_idle_keepalive_connection_is_closed_at_once_when_draining(gunicorn_factory: Factory) -> None:
    server = gunicorn_factory("--keep-alive", "30", "--graceful-timeout", "20")
    conn = http.client.HTTPConnection(server.host, server.port, timeout=10)
    conn.request("GET", "/hello")
    conn.getresponse().read()
    start = time.monotonic()
    server.proc.send_signal(signal.SIGTERM)
    assert conn.sock.recv(1) == b""
    assert server.proc.wait(10) == 0
    assert time.monotonic() - start < 3, "an idle keep-alive connection must not hold the drain"
    conn.close()


@pytest.mark.timeout(40)
def test_grace_period_end_kills_streams_and_drain_callbacks(gunicorn_factory: Factory, tmp_path: Path) -> None:
    closed, drain_marker = tmp_path / "closed", tmp_path / "drain"
    server = gunicorn_factory(
        "--graceful-timeout", "3", env={"GP_TEST_DRAIN_MARKER": str(drain_marker), "GP_TEST_DRAIN_HOLD": "60"}
    )
    stream = send_get(server.address, f"/stream?n=10000&pause=0.05&marker={closed}")
    read_until(stream, b"chunk 1")
    start = time.monotonic()
    server.proc.send_signal(signal.SIGTERM)
    read_to_eof(stream)  # the stream goes on during the grace period, then is cut
    cut_after = time.monotonic() - start
    stream.close()
    assert server.proc.wait(10) == 0
    assert 2.0 < cut_after < 3.5, cut_after
    assert closed.read_text().startswith("closed after ")
    assert drain_marker.read_text() == "draining\nkilled\n"
    log = server.log()
    assert "Worker graceful timeout" in log
    assert "SIGKILL" not in log and "Error handling request" not in log


@pytest.mark.timeout(40)
def test_quick_shutdown_during_a_drain_ends_it_at_once(gunicorn_factory: Factory, tmp_path: Path) -> None:
    closed = tmp_path / "closed"
    server = gunicorn_factory("--graceful-timeout", "20")
    stream = send_get(server.address, f"/stream?n=10000&pause=0.05&marker={closed}")
    read_until(stream, b"chunk 1")
    start = time.monotonic()
    server.proc.send_signal(signal.SIGTERM)
    time.sleep(0.5)
    assert not closed.exists(), "the stream goes on while draining"
    server.proc.send_signal(signal.SIGINT)  # the arbiter's quick shutdown: SIGQUIT to the worker
    read_to_eof(stream)
    stream.close()
    assert server.proc.wait(10) == 0
    assert time.monotonic() - start < 3
    assert closed.read_text().startswith("closed after ")
    assert "Quit signal during the drain" in server.log()


# -- heartbeat ----------------------------------------------------------------------------------------
@pytest.mark.timeout(40)
def test_heartbeat_keeps_an_idle_and_a_busy_worker_alive(gunicorn_factory: Factory) -> None:
    server = gunicorn_factory("--timeout", "2")
    before = pid_of(requests.get(server.url + "/hello", timeout=5).content)
    time.sleep(3)  # idle
    with ThreadPoolExecutor(20) as executor:  # busy: requests in flight for longer than the timeout
        results = list(executor.map(lambda _: fetch(server.address, "/slow?s=3"), range(20)))
    assert all(data.startswith(b"HTTP/1.1 200 OK") for _, data in results)
    assert {pid_of(data) for _, data in results} == {before}
    assert pid_of(requests.get(server.url + "/hello", timeout=5).content) == before
    assert "WORKER TIMEOUT" not in server.log()


@pytest.mark.timeout(40)
def test_a_briefly_blocked_hub_is_logged(gunicorn_factory: Factory) -> None:
    server = gunicorn_factory("--timeout", "8")
    assert requests.get(server.url + "/block?s=2.5", timeout=10).status_code == 200
    wait_for(lambda: "hub was blocked" in server.log(), 5, "the late-heartbeat warning")
    assert "WORKER TIMEOUT" not in server.log()


@pytest.mark.timeout(40)
def test_a_hub_blocked_past_the_timeout_gets_the_worker_aborted_with_its_stack(gunicorn_factory: Factory) -> None:
    server = gunicorn_factory("--timeout", "2")
    before = pid_of(requests.get(server.url + "/hello", timeout=5).content)
    with pytest.raises(requests.ConnectionError):
        requests.get(server.url + "/block?s=20", timeout=15)
    log = server.log()
    assert "WORKER TIMEOUT" in log
    assert "Worker aborted" in log and "time.sleep(" in log and "wsgi_apps.py" in log
    after = pid_of(requests.get(server.url + "/hello", timeout=10).content)
    assert after != before


# -- lifecycle (in this process) ----------------------------------------------------------------------
@pytest.mark.timeout(10)
def test_lifecycle_drain_runs_callbacks_once_and_late_ones_at_once(monkeypatch: pytest.MonkeyPatch) -> None:
    from service import lifecycle

    monkeypatch.setattr(lifecycle, "_callbacks", [])  # restored afterwards: other tests' app may register
    monkeypatch.setattr(lifecycle, "_threads", [])
    monkeypatch.setattr(lifecycle, "_deadline", None)
    calls: list[str] = []
    lifecycle.on_drain(lambda: calls.append("early"))
    assert not lifecycle.draining() and lifecycle.deadline() is None
    before = time.monotonic()
    threads = lifecycle.drain(5.0)
    assert lifecycle.draining()
    assert before + 5.0 <= lifecycle.deadline() <= time.monotonic() + 5.0
    assert lifecycle.drain(1.0) == threads and lifecycle.deadline() >= before + 5.0  # idempotent
    lifecycle.on_drain(lambda: calls.append("late"))
    pool_core.sleep(0.01)
    assert calls == ["early", "late"]
    assert len(lifecycle.drain(5.0)) == 2 and all(t.dead for t in lifecycle.drain(5.0))
