"""The http task against real loopback HTTP(S) servers, called from green threads as the engine does."""

from __future__ import annotations

import socket
import time

import pytest
from http_testserver import Certs, TestServer, make_certs

import pool_core
from pool_core.hub import get_hub
from service.tasks import (
    DestinationNotAllowed,
    HttpConnectError,
    HttpPolicy,
    HttpProtocolError,
    HttpTimeout,
    InvalidArguments,
    Registry,
    ResponseTooLarge,
    Task,
    TLSError,
    TooManyRedirects,
)
from service.tasks.http import connections as connections_module
from service.tasks.http.policy import address_kind

pytestmark = pytest.mark.timeout(60)

LOOPBACK = ("127.0.0.0/8",)


@pytest.fixture(autouse=True)
def _quiet_hub_after_test():
    yield
    for timer in get_hub().timers():
        timer.cancel()
    pool_core.sleep(0)


@pytest.fixture
def server():
    srv = TestServer()
    yield srv
    srv.close()


@pytest.fixture
def make_task():
    registries: list[Registry] = []

    def make(**policy: object) -> Task:
        policy.setdefault("allow", LOOPBACK)
        registry = Registry.with_builtins(http_policy=HttpPolicy(**policy), entry_points=False)
        registries.append(registry)
        return registry.get("http")

    yield make
    for registry in registries:
        registry.close()


@pytest.fixture
def http(make_task):
    return make_task()


def run(task: Task, **args: object) -> dict:
    """Validate `args` and run the task in a green thread, as the engine's pool does."""
    return pool_core.spawn(task.run, task.validate(args)).wait()


def run_many(task: Task, calls: list[dict]) -> list:
    threads = [pool_core.spawn(task.run, task.validate(args)) for args in calls]
    return [gt.wait() for gt in threads]


# -- plain requests ----------------------------------------------------------------------------------
def test_get_returns_status_headers_json_and_elapsed(http, server):
    result = run(http, url=server.url("/echo?x=1"), headers={"X-Test": "yes"})
    assert result["status"] == 200
    assert result["headers"]["content-type"] == "application/json"
    assert result["json"]["method"] == "GET"
    assert result["json"]["path"] == "/echo?x=1"
    assert result["json"]["headers"]["X-Test"] == "yes"
    assert result["json"]["headers"]["Host"] == f"127.0.0.1:{server.port}"
    assert "body" not in result
    assert result["url"] == server.url("/echo?x=1")
    assert 0 < result["elapsed_s"] < 5


def test_post_json_sends_json_with_content_type(http, server):
    result = run(http, method="post", url=server.url("/echo"), json={"a": [1, 2], "b": None})
    assert result["json"]["method"] == "POST"
    assert result["json"]["body"] == '{"a":[1,2],"b":null}'
    assert result["json"]["headers"]["Content-Type"] == "application/json"
    assert result["json"]["headers"]["Content-Length"] == "20"


def test_put_text_body_and_explicit_content_type(http, server):
    result = run(http, method="PUT", url=server.url("/echo"), body="héllo", headers={"Content-Type": "text/x"})
    assert result["json"]["body"] == "héllo"
    assert result["json"]["headers"]["Content-Type"] == "text/x"


def test_text_body_uses_declared_charset(http, server):
    result = run(http, url=server.url("/text"))
    assert result["body"] == "café"
    assert "json" not in result


def test_json_content_type_that_does_not_parse_gives_body(http, server):
    result = run(http, url=server.url("/badjson"))
    assert result["body"] == "{not json"


def test_head_and_not_found(http, server):
    assert run(http, method="HEAD", url=server.url("/echo"))["body"] == ""
    assert run(http, url=server.url("/nope"))["status"] == 404


def test_connection_refused_is_a_connect_error(http):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(HttpConnectError, match=f"127.0.0.1:{port}"):
        run(http, url=f"http://127.0.0.1:{port}/")


def test_a_server_that_breaks_http_is_a_protocol_error(http, server):
    with pytest.raises(HttpProtocolError, match="bad response"):
        run(http, url=server.url("/garbage"))


# -- redirects ------------------------------------------------------------------------------------------
def test_redirect_followed(http, server):
    result = run(http, url=server.url("/redirect?to=/echo"))
    assert result["status"] == 200
    assert result["url"] == server.url("/echo")
    assert server.requests == [("GET", "/redirect?to=/echo"), ("GET", "/echo")]


@pytest.mark.parametrize(("code", "method", "body"), [(303, "GET", ""), (302, "GET", ""), (307, "POST", '{"a":1}')])
def test_redirect_method_rules(http, server, code, method, body):
    result = run(http, method="POST", url=server.url(f"/redirect?code={code}&to=/echo"), json={"a": 1})
    assert (result["json"]["method"], result["json"]["body"]) == (method, body)


def test_redirect_loop_capped_by_max_redirects(http, server):
    with pytest.raises(TooManyRedirects, match="more than 3 redirects"):
        run(http, url=server.url("/loop"), max_redirects=3)
    assert len(server.requests) == 4


def test_max_redirects_zero_returns_the_redirect(http, server):
    result = run(http, url=server.url("/redirect?to=/echo"), max_redirects=0)
    assert result["status"] == 302
    assert result["headers"]["location"] == "/echo"


def test_redirect_into_a_denied_range_is_refused(make_task, server):
    http = make_task(allow=("127.0.0.1/32",))
    for target in (f"http://127.0.0.2:{server.port}/echo", "http://169.254.169.254/latest/meta-data/"):
        with pytest.raises(DestinationNotAllowed):
            run(http, url=server.url(f"/redirect?to={target}"))
    assert [path for _m, path in server.requests] == [f"/redirect?to={t}" for t in (
        f"http://127.0.0.2:{server.port}/echo", "http://169.254.169.254/latest/meta-data/")]  # fmt: skip
    assert server.connections == 1


def test_cross_origin_redirect_drops_credentials(http, server):
    other = TestServer()
    try:
        headers = {"Authorization": "Bearer s3cret", "X-Keep": "1"}
        same = run(http, url=server.url("/redirect?to=/echo"), headers=headers)
        assert same["json"]["headers"]["Authorization"] == "Bearer s3cret"
        cross = run(http, url=server.url(f"/redirect?to={other.url('/echo')}"), headers=headers)
        assert "Authorization" not in cross["json"]["headers"]
        assert cross["json"]["headers"]["X-Keep"] == "1"
    finally:
        other.close()


# -- the allow-list ------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "host", ["127.0.0.1", "10.0.0.1", "169.254.169.254", "[::1]", "localhost", "[::ffff:127.0.0.1]", "0.0.0.0",
             "192.168.1.1", "172.16.0.1", "[fe80::1]", "[fc00::1]", "224.0.0.1", "100.64.0.1"],
)  # fmt: skip
def test_default_policy_refuses_private_destinations_without_connecting(host, monkeypatch):
    connects = []
    monkeypatch.setattr(connections_module, "create_connection", lambda *a, **k: connects.append(a))
    registry = Registry.with_builtins(entry_points=False)
    with pytest.raises(DestinationNotAllowed, match="not allowed"):
        run(registry.get("http"), url=f"http://{host}:8080/")
    assert connects == []


def test_default_policy_never_reaches_a_loopback_server(server):
    registry = Registry.with_builtins(entry_points=False)
    with pytest.raises(DestinationNotAllowed, match=r"127\.0\.0\.1 \(loopback\)"):
        run(registry.get("http"), url=server.url("/echo"))
    assert server.connections == 0


@pytest.mark.parametrize(
    ("address", "allowed", "kind"),
    [("8.8.8.8", True, "public"), ("2606:4700::1111", True, "public"), ("127.0.0.1", False, "loopback"),
     ("10.1.2.3", False, "private"), ("169.254.169.254", False, "link-local"), ("::1", False, "loopback"),
     ("fe80::1", False, "link-local"), ("fc00::1", False, "private"), ("0.0.0.0", False, "unspecified"),
     ("239.1.1.1", False, "multicast"), ("ff02::1", False, "multicast"), ("::ffff:10.0.0.1", False, "private"),
     ("::ffff:8.8.8.8", True, "public"), ("64:ff9b::a00:1", False, "private"), ("240.0.0.1", False, "reserved")],
)  # fmt: skip
def test_default_policy_address_table(address, allowed, kind):
    import ipaddress

    ip = ipaddress.ip_address(address)
    assert HttpPolicy().is_allowed(ip) is allowed
    assert address_kind(ip) == kind


def test_allow_and_deny_lists():
    import ipaddress

    policy = HttpPolicy(allow=("127.0.0.0/8", "10.1.0.0/16"), deny=("8.8.0.0/16", "127.0.0.9"))
    assert policy.is_allowed(ipaddress.ip_address("127.0.0.1"))
    assert policy.is_allowed(ipaddress.ip_address("::ffff:127.0.0.1"))
    assert policy.is_allowed(ipaddress.ip_address("10.1.2.3"))
    assert not policy.is_allowed(ipaddress.ip_address("10.2.0.1"))
    assert not policy.is_allowed(ipaddress.ip_address("127.0.0.9"))
    assert not policy.is_allowed(ipaddress.ip_address("8.8.8.8"))
    assert policy.is_allowed(ipaddress.ip_address("1.1.1.1"))
    assert not HttpPolicy(allow_public=False).is_allowed(ipaddress.ip_address("1.1.1.1"))
    with pytest.raises(ValueError, match="invalid allow CIDR"):
        HttpPolicy(allow=("not-a-cidr",))


# -- limits --------------------------------------------------------------------------------------------
def test_timeout_bounds_the_whole_call(http, server):
    started = time.monotonic()
    with pytest.raises(HttpTimeout, match="within 0.3 s"):
        run(http, url=server.url("/sleep?s=2"), timeout=0.3)
    assert time.monotonic() - started < 1.5


@pytest.mark.parametrize("chunked", [False, True])
def test_large_response_is_refused(make_task, server, chunked):
    http = make_task(max_response_bytes=10_000)
    flag = "&chunked=1" if chunked else ""
    assert len(run(http, url=server.url(f"/big?n=10000{flag}"))["body"]) == 10_000
    with pytest.raises(ResponseTooLarge, match="10000"):
        run(http, url=server.url(f"/big?n=10001{flag}"))
    with pytest.raises(ResponseTooLarge):
        run(http, url=server.url(f"/big?n=5000000{flag}"))


# -- connections -----------------------------------------------------------------------------------------
def test_keep_alive_connection_is_reused(http, server):
    for _ in range(3):
        assert run(http, url=server.url("/echo"))["status"] == 200
    run(http, method="POST", url=server.url("/echo"), json={"x": 1})
    assert server.connections == 1
    assert len(server.requests) == 4


def test_connection_the_server_closed_while_idle_is_replaced(http, server):
    assert run(http, url=server.url("/close-after"))["json"] == {"ok": True}
    time.sleep(0.05)  # let the server's close reach us
    assert run(http, url=server.url("/echo"))["status"] == 200
    assert server.connections == 2


def test_per_host_bound_is_respected(make_task, server):
    http = make_task(max_per_host=2)
    results = run_many(http, [{"url": server.url("/sleep?s=0.1")} for _ in range(8)])
    assert [r["status"] for r in results] == [200] * 8
    assert server.max_open <= 2
    assert server.connections <= 2


def test_fifty_concurrent_requests_are_cooperative(make_task, server):
    http = make_task(max_per_host=64)
    started = time.monotonic()
    results = run_many(http, [{"url": server.url("/sleep?s=0.2")} for _ in range(50)])
    elapsed = time.monotonic() - started
    assert [r["status"] for r in results] == [200] * 50
    assert server.max_active > 10
    assert 0.2 <= elapsed < 1.5, elapsed


def test_stale_reused_connection_is_replaced_once_for_idempotent_methods(http, server, monkeypatch):
    monkeypatch.setattr(connections_module.Connection, "is_dropped", lambda self: False)  # miss the close
    run(http, url=server.url("/close-after"))
    time.sleep(0.05)
    assert run(http, url=server.url("/echo"))["status"] == 200  # sent on the dead one, then on a new one
    assert server.connections == 2
    run(http, url=server.url("/close-after"))
    time.sleep(0.05)
    with pytest.raises(HttpConnectError):  # a POST is never sent twice
        run(http, method="POST", url=server.url("/echo"), json={})
    assert ("POST", "/echo") not in server.requests


def test_idle_timeout_and_max_idle(make_task, server):
    http = make_task(idle_timeout=0)
    run(http, url=server.url("/echo"))
    run(http, url=server.url("/echo"))
    assert server.connections == 2
    other = TestServer()
    try:
        http = make_task(max_idle=1)
        run(http, url=server.url("/echo"))
        run(http, url=other.url("/echo"))
        client_pool = http.fn.__self__.pool
        assert client_pool.idle_count() == 1
    finally:
        other.close()


def test_waiting_for_a_host_slot_counts_against_the_timeout(make_task, server):
    http = make_task(max_per_host=1)
    slow = pool_core.spawn(http.run, http.validate({"url": server.url("/sleep?s=0.5")}))
    pool_core.sleep(0.05)
    with pytest.raises(HttpTimeout):
        run(http, url=server.url("/echo"), timeout=0.2)
    assert slow.wait()["status"] == 200
    assert ("GET", "/echo") not in server.requests


def test_killed_request_frees_its_slot_and_closes_its_connection(make_task, server):
    http = make_task(max_per_host=1)
    doomed = pool_core.spawn(http.run, http.validate({"url": server.url("/sleep?s=1")}))
    pool_core.sleep(0.1)
    doomed.kill()
    started = time.monotonic()
    assert run(http, url=server.url("/echo"))["status"] == 200
    assert time.monotonic() - started < 0.5
    assert server.connections == 2
    assert http.fn.__self__.pool.idle_count() == 1


def test_head_is_not_refused_for_the_size_it_announces(make_task, server):
    http = make_task(max_response_bytes=1000)
    result = run(http, method="HEAD", url=server.url("/big?n=5000"))
    assert (result["status"], result["headers"]["content-length"], result["body"]) == (200, "5000", "")


# -- HTTPS ------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def certs(tmp_path_factory) -> Certs:
    return make_certs(tmp_path_factory.mktemp("certs"))


@pytest.fixture
def tls_server(certs):
    srv = TestServer(tls=certs.server_context())
    yield srv
    srv.close()


def test_https_with_a_trusted_test_ca(make_task, certs, tls_server):
    http = make_task(ca_file=str(certs.ca))
    result = run(http, url=tls_server.url("/echo"), headers={"X-Test": "tls"})
    assert result["status"] == 200
    assert result["json"]["headers"]["X-Test"] == "tls"
    assert run(http, url=tls_server.url("/echo", host="localhost"))["status"] == 200
    run(http, url=tls_server.url("/echo"))
    assert tls_server.connections == 2  # one per (scheme, host, port): 127.0.0.1 and localhost, each reused


def test_https_untrusted_certificate_fails_clearly(make_task, tls_server):
    http = make_task()  # the system's CAs do not know the test CA
    with pytest.raises(TLSError, match="certificate verification failed for 127.0.0.1"):
        run(http, url=tls_server.url("/echo"))


def test_https_name_mismatch_fails(make_task, certs):
    srv = TestServer(tls=certs.server_context(other=True))
    try:
        with pytest.raises(TLSError, match="verification failed.*(mismatch|IP address)"):
            run(make_task(ca_file=str(certs.ca)), url=srv.url("/echo"))
    finally:
        srv.close()


def test_https_is_cooperative(make_task, certs, tls_server):
    http = make_task(ca_file=str(certs.ca))
    ticks = []

    def ticker() -> None:
        for _ in range(10):
            ticks.append(time.monotonic())
            pool_core.sleep(0.02)

    started = time.monotonic()
    ticking = pool_core.spawn(ticker)
    results = run_many(http, [{"url": tls_server.url("/sleep?s=0.3")} for _ in range(5)])
    ticking.wait()
    assert [r["status"] for r in results] == [200] * 5
    assert time.monotonic() - started < 1.2
    assert len(ticks) == 10 and ticks[-1] - started < 0.5


# -- argument validation specific to http ------------------------------------------------------------------
@pytest.mark.parametrize(
    ("args", "field", "message"),
    [({"url": "ftp://example.com/"}, "url", "http:// or https://"),
     ({"url": "http:///path"}, "url", "no host"),
     ({"url": "http://u:p@example.com/"}, "url", "credentials"),
     ({"url": "http://example.com:99999/"}, "url", "invalid port"),
     ({"url": "http://example.com/ x"}, "url", "spaces"),
     ({"url": "http://example.com/", "body": "a", "json": {}}, "json", "not both"),
     ({"url": "http://example.com/", "headers": {"Content-Length": "5"}}, "headers", "set by the task"),
     ({"url": "http://example.com/", "headers": {"X": "a\r\nInjected: 1"}}, "headers.X", "pattern"),
     ({"url": "http://example.com/", "headers": {"X": "€"}}, "headers", "Latin-1"),
     ({"url": "http://ä..b/"}, "url", "not a valid host name"),
     ({"url": "http://example.com/", "method": "GE T"}, "method", "pattern"),
     ({"url": "http://example.com/", "timeout": 0}, "timeout", "greater than 0"),
     ({"url": "http://example.com/", "max_redirects": 1.5}, "max_redirects", "integer"),
     ({"url": "http://example.com/", "verify": False}, "verify", "unknown argument"),
     ({}, "url", "required")],
)  # fmt: skip
def test_http_argument_errors(http, args, field, message):
    with pytest.raises(InvalidArguments) as info:
        http.validate(args)
    assert [e["field"] for e in info.value.errors] == [field]
    assert message in info.value.errors[0]["message"]


def test_valid_http_arguments_are_normalised(http):
    args = http.validate({"url": "https://münchen.example/a?b=c", "method": "post", "timeout": 3, "json": [1]})
    assert args == {"url": "https://münchen.example/a?b=c", "method": "post", "timeout": 3.0, "json": [1]}
