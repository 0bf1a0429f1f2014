"""The http task's guard against names and redirects that lead into denied ranges (see service.tasks.http.policy).

The allow-list is judged on the addresses a name RESOLVES to, for the first request and for every redirect:
a DNS name pointing at loopback, private or link-local space is refused before any connection is made, a
name with both kinds of address is only ever connected to on the allowed ones, and a redirect to such a name
(or address) is refused after the redirecting server was asked, never followed. Resolution is faked with a
patched `socket.getaddrinfo` for names under `.test`; everything else (IP literals, the real loopback test
server) is real. Time and size caps have their own tests in tests/service/test_http_task.py.
"""

from __future__ import annotations

import ipaddress
import socket
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import pool_core
from pool_core.hub import get_hub
from service.tasks import DestinationNotAllowed, HttpPolicy, Registry, Task
from service.tasks.http import connections as connections_module

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "service"))
from http_testserver import TestServer  # noqa: E402  (tests/service is not a package)

pytestmark = pytest.mark.timeout(30)

#: name -> the addresses the fake resolver gives it
NAMES = {
    "loop.test": ["127.0.0.2"],
    "private.test": ["10.1.2.3"],
    "shared.test": ["100.64.0.7"],
    "meta.test": ["169.254.169.254"],
    "v6local.test": ["fe80::1"],
    "v6loop.test": ["::1"],
    "v6ula.test": ["fd00::7"],
    "mapped.test": ["::ffff:192.168.0.1"],
    "mixed.test": ["10.0.0.9", "127.0.0.1"],  # one denied, one allowed (with allow=127.0.0.1/32)
}
DENIED = [name for name in NAMES if name != "mixed.test"]


@pytest.fixture(autouse=True)
def fake_dns(monkeypatch: pytest.MonkeyPatch) -> None:
    """Resolve the `.test` names of NAMES; leave every other lookup to the real resolver."""
    real = socket.getaddrinfo

    def getaddrinfo(host: Any, port: Any, *args: Any, **kwargs: Any) -> list:
        if host in NAMES:
            return [
                (socket.AF_INET6, socket.SOCK_STREAM, 6, "", (a, port, 0, 0)) if ":" in a
                else (socket.AF_INET, socket.SOCK_STREAM, 6, "", (a, port))
                for a in NAMES[host]
            ]  # fmt: skip
        return real(host, port, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)


@pytest.fixture
def connects(monkeypatch: pytest.MonkeyPatch) -> list[tuple]:
    """Every address the http task connects to (the connection is still made)."""
    seen: list[tuple] = []
    real = connections_module.create_connection

    def create_connection(address: tuple, *args: Any, **kwargs: Any) -> Any:
        seen.append(address)
        return real(address, *args, **kwargs)

    monkeypatch.setattr(connections_module, "create_connection", create_connection)
    return seen


@pytest.fixture
def server() -> Iterator[TestServer]:
    srv = TestServer()
    yield srv
    srv.close()


@pytest.fixture
def make_task() -> Iterator[Any]:
    registries: list[Registry] = []

    def make(**policy: Any) -> Task:
        registry = Registry.with_builtins(http_policy=HttpPolicy(**policy), entry_points=False)
        registries.append(registry)
        return registry.get("http")

    yield make
    for registry in registries:
        registry.close()
    for timer in get_hub().timers():
        timer.cancel()
    pool_core.sleep(0)


def run(task: Task, **args: Any) -> dict:
    """Validate `args` and run the task in a green thread, as the engine's pool does."""
    return pool_core.spawn(task.run, task.validate(args)).wait()


@pytest.mark.parametrize("name", DENIED)
def test_a_name_resolving_into_a_denied_range_is_refused_without_connecting(
    make_task: Any, connects: list, name: str
) -> None:
    http = make_task()  # the default policy: public addresses only
    with pytest.raises(DestinationNotAllowed) as info:
        run(http, url=f"http://{name}:8080/")
    address = str(ipaddress.ip_address(NAMES[name][0]))  # as Python writes it (::ffff:c0a8:1)
    assert name in str(info.value) and address in str(info.value), info.value
    assert connects == []


def test_a_name_with_a_denied_and_an_allowed_address_connects_only_to_the_allowed_one(
    make_task: Any, connects: list, server: TestServer
) -> None:
    http = make_task(allow=("127.0.0.1/32",))
    result = run(http, url=f"http://mixed.test:{server.port}/echo")
    assert result["status"] == 200
    assert connects == [("127.0.0.1", server.port)], connects  # never 10.0.0.9


@pytest.mark.parametrize("target", [*DENIED, "10.0.0.1", "192.168.1.1", "127.0.0.2", "[::1]", "169.254.169.254"])
def test_a_redirect_into_a_denied_range_is_refused(make_task: Any, connects: list, server: TestServer,
                                                   target: str) -> None:  # fmt: skip
    http = make_task(allow=("127.0.0.1/32",))  # the test server itself is allowed; nothing else private is
    location = f"http://{target}:{server.port}/echo"
    with pytest.raises(DestinationNotAllowed):
        run(http, url=server.url(f"/redirect?to={location}"))
    assert [path for _method, path in server.requests] == [f"/redirect?to={location}"]
    assert connects == [("127.0.0.1", server.port)], connects  # only the redirecting server was reached


def test_a_redirect_from_a_name_to_an_allowed_name_is_followed(make_task: Any, server: TestServer) -> None:
    http = make_task(allow=("127.0.0.1/32",))
    result = run(http, url=server.url(f"/redirect?to=http://mixed.test:{server.port}/echo"))
    assert result["status"] == 200 and result["json"]["path"] == "/echo", result
