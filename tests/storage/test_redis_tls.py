"""`rediss://` against redis-server's own TLS port: certificates verified, client certificates sent, the
handshake parked on the hub and bounded by the connect timeout."""

from __future__ import annotations

import shutil
import socket
import subprocess
import time

import pytest
import redis
from test_redis_support import RedisServer, Ticker, assert_connect_times_out_cooperatively

from pool_core import GreenPool, spawn
from service.storage.redis import connect

pytestmark = pytest.mark.timeout(30)

SAN = "subjectAltName=IP:127.0.0.1,DNS:localhost\n"


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    """A throwaway CA, a server certificate for 127.0.0.1 and a client certificate, by the openssl CLI."""
    if shutil.which("openssl") is None:
        pytest.skip("openssl is not installed (Debian package openssl)")
    d = tmp_path_factory.mktemp("pki")
    (d / "san.ext").write_text(SAN)
    key = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]

    def openssl(*args):
        subprocess.run(["openssl", *args], cwd=d, check=True, capture_output=True)

    openssl("req", "-x509", *key, "-keyout", "ca.key", "-out", "ca.pem", "-days", "2", "-subj", "/CN=test CA")
    for name in ("server", "client"):
        openssl("req", *key, "-keyout", f"{name}.key", "-out", f"{name}.csr", "-subj", f"/CN={name}")
        openssl("x509", "-req", "-in", f"{name}.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial",
                "-out", f"{name}.pem", "-days", "2", "-extfile", "san.ext")  # fmt: skip
    return d


@pytest.fixture(scope="module")
def tls_server(pki, tmp_path_factory):
    server = RedisServer(tmp_path_factory.mktemp("redis-tls"), "--tls-cert-file", str(pki / "server.pem"),
                         "--tls-key-file", str(pki / "server.key"), "--tls-ca-cert-file", str(pki / "ca.pem"),
                         "--tls-auth-clients", "yes", tls=True)  # fmt: skip
    try:
        server.start()
    except RuntimeError:
        if b"TLS" in b"".join(server.log) or b"tls" in b"".join(server.log):
            pytest.skip("this redis-server was built without TLS support")
        raise
    yield server
    server.stop()


def tls_client(server, pki, **kwargs):
    options = {"ssl_ca_certs": str(pki / "ca.pem"), "ssl_certfile": str(pki / "client.pem"),
               "ssl_keyfile": str(pki / "client.key")}  # fmt: skip
    options.update(kwargs)
    return connect(server.url, **options)


def test_rediss_verifies_the_server_sends_a_client_certificate_and_serves_green_threads(tls_server, pki):
    r = tls_client(tls_server, pki)
    r.delete("n")

    def work(i):
        with r.pipeline() as pipe:
            pipe.incr("n").set(f"k{i}", i)
            pipe.execute()
        return int(r.get(f"k{i}"))

    assert sorted(GreenPool(10).imap(work, range(100))) == list(range(100))
    assert int(r.get("n")) == 100
    with Ticker() as ticker:
        start = time.monotonic()
        spawn(lambda: r.rpush("q", "tls"))
        assert r.blpop("q", 2) == (b"q", b"tls")
        assert r.blpop("empty", 1) is None
        end = time.monotonic()
    ticker.assert_hub_was_free(start, end)
    r.connection_pool.disconnect()


def test_rediss_refuses_an_unknown_server_certificate_and_the_server_a_missing_client_one(tls_server, pki):
    unknown_ca = connect(tls_server.url, ssl_certfile=str(pki / "client.pem"), ssl_keyfile=str(pki / "client.key"))
    with pytest.raises(redis.ConnectionError, match="CERTIFICATE_VERIFY_FAILED|certificate verify failed"):
        unknown_ca.ping()
    anonymous = tls_client(tls_server, pki, ssl_certfile=None, ssl_keyfile=None)
    with pytest.raises(redis.ConnectionError):
        anonymous.ping()


def test_a_tls_handshake_that_gets_no_answer_ends_at_the_connect_timeout_cooperatively(pki):
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(8)  # the kernel completes TCP; nobody ever answers the ClientHello
    host, port = silent.getsockname()
    try:
        assert_connect_times_out_cooperatively(f"rediss://{host}:{port}", ssl_ca_certs=str(pki / "ca.pem"))
    finally:
        silent.close()

