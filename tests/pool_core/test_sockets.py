"""pool_core.sockets over real loopback connections (127.0.0.1 only), all on the test thread's one hub."""

import contextlib
import errno
import hashlib
import http.client
import http.server
import io
import socket
import ssl
import subprocess
import time

import pytest
from tools import require

from pool_core import GreenSocket, Timeout, create_connection, listen, sleep, sockets, spawn, wrap_ssl
from pool_core.hub import get_hub

pytestmark = pytest.mark.timeout(15)

LOCAL = ("127.0.0.1", 0)


def recv_exactly(sock, n):
    chunks = []
    while n:
        chunk = sock.recv(min(n, 65536))
        if not chunk:
            raise EOFError("peer closed early")
        chunks.append(chunk)
        n -= len(chunk)
    return b"".join(chunks)


@contextlib.contextmanager
def serving(handler, server=None):
    """Run an accept loop spawning `handler(conn)` per connection; yield the listening address."""
    server = server or listen(LOCAL)

    def handle(conn):
        try:
            handler(conn)
        finally:
            conn.close()

    def accept_loop():
        while True:
            conn, _addr = server.accept()
            spawn(handle, conn)

    acceptor = spawn(accept_loop)
    try:
        yield server.getsockname()
    finally:
        acceptor.kill()
        server.close()


def echo(conn):
    while data := conn.recv(65536):
        conn.sendall(data)


@contextlib.contextmanager
def green_pair():
    a, b = socket.socketpair()
    ga, gb = GreenSocket(a), GreenSocket(b)
    try:
        yield ga, gb
    finally:
        ga.close()
        gb.close()


def test_an_echo_server_serves_many_concurrent_clients_on_one_hub():
    def client(i):
        with create_connection(address) as sock:
            got = []
            for j in range(5):
                msg = f"client {i} message {j}\n".encode() * 50
                sock.sendall(msg)
                got.append(recv_exactly(sock, len(msg)) == msg)
            return all(got)

    with serving(echo) as address:
        clients = [spawn(client, i) for i in range(100)]
        assert [c.wait() for c in clients] == [True] * 100


def test_recv_with_a_timeout_raises_socket_timeout_and_the_socket_stays_usable():
    with green_pair() as (a, b):
        a.settimeout(0.05)
        assert a.gettimeout() == 0.05
        started = time.monotonic()
        with pytest.raises(socket.timeout):
            a.recv(10)
        assert 0.04 <= time.monotonic() - started < 1.0
        b.sendall(b"late")
        assert a.recv(10) == b"late"


def test_accept_with_a_timeout_raises_timeout_error():
    server = listen(LOCAL)
    try:
        server.settimeout(0.05)
        with pytest.raises(TimeoutError):
            server.accept()
    finally:
        server.close()


def test_a_non_blocking_green_socket_raises_instead_of_parking():
    with green_pair() as (a, _b):
        a.setblocking(False)
        assert a.gettimeout() == 0.0 and not a.getblocking()
        with pytest.raises(BlockingIOError):
            a.recv(10)


def test_a_pool_core_timeout_interrupts_recv_and_leaves_the_socket_usable():
    with green_pair() as (a, b):
        with pytest.raises(Timeout), Timeout(0.05):
            a.recv(10)
        b.sendall(b"after")
        assert a.recv(10) == b"after"


def test_create_connection_resolves_a_host_name_on_an_os_thread(monkeypatch):
    resolved_on_threads = []
    real_execute = sockets.execute

    def recording_execute(fn, *args, **kwargs):
        resolved_on_threads.append(args[0])
        return real_execute(fn, *args, **kwargs)

    monkeypatch.setattr(sockets, "execute", recording_execute)
    with serving(echo) as (_ip, port):
        with create_connection(("127.0.0.1", port)) as numeric:
            numeric.sendall(b"1")
            assert numeric.recv(1) == b"1"
        assert resolved_on_threads == []  # a numeric address needs no lookup
        with create_connection(("localhost", port)) as named:  # tries each address (::1 may be refused)
            named.sendall(b"2")
            assert named.recv(1) == b"2"
        assert resolved_on_threads == ["localhost"]


def test_connecting_to_a_closed_port_is_refused():
    probe = socket.socket()
    probe.bind(LOCAL)
    address = probe.getsockname()
    probe.close()  # nothing listens there now
    with pytest.raises(ConnectionRefusedError):
        create_connection(address)
    with GreenSocket() as sock:
        assert sock.connect_ex(address) == errno.ECONNREFUSED


def test_sendall_of_a_large_payload_parks_in_wait_write_while_the_reader_is_slow(monkeypatch):
    hub = get_hub()
    write_waits = []
    real_wait_write = hub.wait_write

    def counting_wait_write(fd, timeout=None, exc=None, owner=0):
        write_waits.append(fd)
        real_wait_write(fd, timeout, exc, owner)

    monkeypatch.setattr(hub, "wait_write", counting_wait_write)
    payload = bytes(range(256)) * (4 * 1024 * 1024 // 256)
    ticks = []

    def slow_reader(sock):
        digest, received = hashlib.sha256(), 0
        while received < len(payload):
            chunk = sock.recv(65536)
            digest.update(chunk)
            received += len(chunk)
            sleep(0.001)
        return digest.hexdigest()

    def ticker():
        while True:
            ticks.append(time.monotonic())
            sleep(0.005)

    with green_pair() as (a, b):
        for s in (a, b):
            s.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 65536)
            s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)
        reader = spawn(slow_reader, b)
        tick = spawn(ticker)
        a.sendall(payload)
        assert reader.wait() == hashlib.sha256(payload).hexdigest()
        tick.kill()
    assert len(write_waits) > 10
    assert len(ticks) > 3  # other green threads ran while sendall waited


def test_sendall_timeout_bounds_the_whole_call_when_nobody_reads():
    with green_pair() as (a, _b):
        a.settimeout(0.1)
        started = time.monotonic()
        with pytest.raises(TimeoutError):
            a.sendall(b"x" * (64 * 1024 * 1024))
        assert time.monotonic() - started < 2.0


def test_sendfile_sends_a_file_cooperatively_with_offset_and_count(tmp_path):
    content = bytes(range(256)) * 8192  # 2 MiB: more than the socket buffers hold
    path = tmp_path / "payload.bin"
    path.write_bytes(content)
    with green_pair() as (a, b):
        reader = spawn(recv_exactly, b, len(content))
        with path.open("rb") as f:
            assert a.sendfile(f) == len(content)
            assert f.tell() == len(content)
        assert reader.wait() == content
        reader = spawn(recv_exactly, b, 1000)
        with path.open("rb") as f:
            assert a.sendfile(f, offset=300, count=1000) == 1000
        assert reader.wait() == content[300:1300]
        reader = spawn(recv_exactly, b, 5)
        assert a.sendfile(io.BytesIO(b"0123456789"), offset=2, count=5) == 5  # no fileno: read + sendall
        assert reader.wait() == b"23456"


def test_closing_a_socket_wakes_its_parked_reader_with_an_error():
    with green_pair() as (a, _b):
        reader = spawn(a.recv, 10)
        sleep(0.01)  # the reader is parked in wait_read now
        a.close()
        with pytest.raises(OSError) as info:
            reader.wait()
        assert info.value.errno == errno.EBADF
        assert a.fileno() == -1


def test_two_green_threads_reading_one_socket_is_a_runtime_error_not_a_hang():
    with green_pair() as (a, b):
        first = spawn(a.recv, 10)
        sleep(0)
        second = spawn(a.recv, 10)
        with pytest.raises(RuntimeError, match="already has a green thread waiting to read"):
            second.wait()
        b.sendall(b"hi")
        assert first.wait() == b"hi"


def test_makefile_reads_lines_and_keeps_the_fd_open_until_the_file_closes():
    with green_pair() as (a, b):
        reader = a.makefile("r", encoding="utf-8", newline="\n")
        writer = spawn(lambda: [b.sendall(part) for part in (b"one\ntw", b"o\n", b"three\n")])
        assert [reader.readline() for _ in range(3)] == ["one\n", "two\n", "three\n"]
        writer.wait()
        a.close()  # the open file still needs the descriptor (stdlib semantics)
        b.sendall(b"four\n")
        assert reader.readline() == "four\n"
        reader.close()
        assert a.fileno() == -1


def test_udp_sendto_and_recvfrom():
    receiver = GreenSocket(socket.AF_INET, socket.SOCK_DGRAM)
    sender = GreenSocket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        receiver.bind(LOCAL)
        sender.bind(LOCAL)
        waiting = spawn(receiver.recvfrom, 100)
        sleep(0)
        sender.sendto(b"datagram", receiver.getsockname())
        assert waiting.wait() == (b"datagram", sender.getsockname())
    finally:
        receiver.close()
        sender.close()


# -- http.client / http.server over green sockets ---------------------------------------------------


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_GET(self):
        self._reply(f"hello {self.path}".encode())

    def do_POST(self):
        self._reply(self.rfile.read(int(self.headers["Content-Length"]))[::-1])

    def _reply(self, body):
        self.send_response(200)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


def http_handler(conn):
    Handler(conn, conn.getpeername(), None)


class GreenHTTPConnection(http.client.HTTPConnection):
    def connect(self):
        self.sock = create_connection((self.host, self.port), self.timeout, self.source_address)


def test_http_client_over_green_sockets_against_a_green_http_server():
    def client(i):
        conn = GreenHTTPConnection(*address, timeout=5)
        try:
            answers = []
            for j in range(3):  # keep-alive: three requests on one connection
                conn.request("GET", f"/{i}/{j}")
                answers.append(conn.getresponse().read())
            conn.request("POST", "/", body=b"abc" * 1000)
            answers.append(conn.getresponse().read())
            return answers
        finally:
            conn.close()

    with serving(http_handler) as address:
        clients = [spawn(client, i) for i in range(20)]
        for i, c in enumerate(clients):
            assert c.wait() == [f"hello /{i}/{j}".encode() for j in range(3)] + [b"cba" * 1000]


# -- TLS ---------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def certs(tmp_path_factory):
    """A throwaway CA and a server certificate for localhost / 127.0.0.1, made with the openssl CLI."""
    (openssl,) = require("openssl")
    d = tmp_path_factory.mktemp("certs")
    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
    (d / "server.ext").write_text(
        "subjectAltName=DNS:localhost,IP:127.0.0.1\nbasicConstraints=CA:FALSE\n"
        "keyUsage=critical,digitalSignature\nextendedKeyUsage=serverAuth\n"
        "subjectKeyIdentifier=hash\nauthorityKeyIdentifier=keyid\n"
    )
    for args in (
        ["req", "-x509", *ec, "-keyout", "ca.key", "-out", "ca.pem", "-days", "2", "-subj", "/CN=greenpool test CA",
         "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign,cRLSign"],
        ["req", *ec, "-keyout", "server.key", "-out", "server.csr", "-subj", "/CN=localhost"],
        ["x509", "-req", "-in", "server.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial",
         "-out", "server.pem", "-days", "2", "-extfile", "server.ext"],
    ):  # fmt: skip
        subprocess.run([openssl, *args], cwd=d, check=True, capture_output=True)
    server = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server.load_cert_chain(d / "server.pem", d / "server.key")
    client = ssl.create_default_context(cafile=str(d / "ca.pem"))
    assert client.verify_mode == ssl.CERT_REQUIRED and client.check_hostname
    return server, client


def test_tls_round_trip_with_certificate_verification(certs):
    server_ctx, client_ctx = certs

    def tls_echo(conn):
        with wrap_ssl(conn, server_ctx, server_side=True) as tls:
            echo(tls)

    def client(i):
        with wrap_ssl(create_connection(address), client_ctx, server_hostname="localhost") as tls:
            assert tls.getpeercert()["subject"] == ((("commonName", "localhost"),),)
            msg = f"secret {i}".encode() * 1000
            tls.sendall(msg)
            return recv_exactly(tls, len(msg)) == msg

    with serving(tls_echo) as address:
        clients = [spawn(client, i) for i in range(10)]
        assert all(c.wait() for c in clients)


def test_tls_client_refuses_a_certificate_for_another_host(certs):
    server_ctx, client_ctx = certs

    def tls_echo(conn):
        with contextlib.suppress(ssl.SSLError, OSError), wrap_ssl(conn, server_ctx, server_side=True) as tls:
            echo(tls)

    with serving(tls_echo) as address, pytest.raises(ssl.SSLCertVerificationError):
        wrap_ssl(create_connection(address), client_ctx, server_hostname="elsewhere.example")


def test_tls_handshake_is_cooperative(certs):
    """While the server sits in its handshake waiting for a slow client, other green threads keep running."""
    server_ctx, client_ctx = certs
    in_handshake = []
    ticks_during_handshake = []

    def ticker():
        while True:
            if in_handshake:
                ticks_during_handshake.append(1)
            sleep(0.005)

    def tls_server(conn):
        in_handshake.append(True)
        with wrap_ssl(conn, server_ctx, server_side=True) as tls:
            in_handshake.clear()
            echo(tls)

    def slow_client():
        raw = create_connection(address)
        sleep(0.2)  # the server has started its handshake and must be parked, not blocking the hub
        with wrap_ssl(raw, client_ctx, server_hostname="localhost") as tls:
            tls.sendall(b"ping")
            return tls.recv(10)

    tick = spawn(ticker)
    with serving(tls_server) as address:
        assert spawn(slow_client).wait() == b"ping"
    tick.kill()
    assert len(ticks_during_handshake) >= 10


def test_https_with_http_client_over_green_tls(certs):
    server_ctx, client_ctx = certs

    def https_handler(conn):
        with wrap_ssl(conn, server_ctx, server_side=True) as tls:
            Handler(tls, tls.getpeername(), None)

    class GreenHTTPSConnection(http.client.HTTPConnection):
        def connect(self):
            raw = create_connection((self.host, self.port), self.timeout)
            self.sock = wrap_ssl(raw, client_ctx, server_hostname=self.host)

    with serving(https_handler) as (_ip, port):
        conn = GreenHTTPSConnection("localhost", port, timeout=5)
        try:
            conn.request("GET", "/secure")
            response = conn.getresponse()
            assert (response.status, response.read()) == (200, b"hello /secure")
            conn.request("POST", "/", body=b"xyz" * 5000)
            assert conn.getresponse().read() == b"zyx" * 5000
        finally:
            conn.close()


def test_tls_listening_socket_accepts_green_tls_connections(certs):
    server_ctx, client_ctx = certs
    server = wrap_ssl(listen(LOCAL), server_ctx, server_side=True)
    with serving(echo, server) as address:
        tls = wrap_ssl(GreenSocket(), client_ctx, server_hostname="localhost")
        tls.connect(address)  # plain connect, then the handshake
        with tls:
            tls.sendall(b"over tls")
            assert recv_exactly(tls, 8) == b"over tls"


def test_tls_bytes_already_buffered_by_openssl_are_read_without_waiting_on_the_fd(certs):
    server_ctx, client_ctx = certs
    received = []

    def tls_reader(conn):
        with wrap_ssl(conn, server_ctx, server_side=True) as tls:
            received.append(tls.recv(3))
            tls.settimeout(0.5)  # the fd has nothing more to read: only OpenSSL's buffer holds "def"
            received.append((tls.pending(), tls.recv(3)))
            tls.sendall(b"done")

    with (
        serving(tls_reader) as address,
        wrap_ssl(create_connection(address), client_ctx, server_hostname="localhost") as tls,
    ):
        tls.sendall(b"abcdef")  # one TLS record
        assert recv_exactly(tls, 4) == b"done"
    assert received == [b"abc", (3, b"def")]
