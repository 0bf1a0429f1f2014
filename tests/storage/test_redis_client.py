"""redis-py on pool_core's sockets against a real redis-server: concurrency, timeouts and reconnection
never block the hub (a ticking green thread keeps its 10 ms beat throughout)."""

from __future__ import annotations

import socket
import time

import pytest
import redis
import test_redis_support
from redis._parsers import _HiredisParser, _RESP2Parser, _RESP3Parser
from redis.backoff import ConstantBackoff
from test_redis_support import RedisServer, Ticker, assert_connect_times_out_cooperatively

from pool_core import GreenPool, Timeout, sleep, sockets, spawn
from service.storage.redis import (
    GreenConnection,
    GreenConnectionPool,
    GreenPubSub,
    GreenRedis,
    GreenRetry,
    GreenSSLConnection,
    connect,
    parse_url,
)  # fmt: skip

pytestmark = pytest.mark.timeout(30)
redis_server = test_redis_support.redis_server  # the module-scoped server fixture


@pytest.fixture
def client(redis_server):
    r = connect(redis_server.url)
    r.flushall()
    yield r
    r.connection_pool.disconnect()


def test_the_parser_is_pure_python_even_when_hiredis_is_asked_for():
    for protocol, parser in ((2, _RESP2Parser), (3, _RESP3Parser)):
        conn = GreenConnection(host="127.0.0.1", port=1, protocol=protocol, parser_class=_HiredisParser)
        assert type(conn._parser) is parser


def test_urls_give_host_port_db_and_tls_and_bad_ones_are_refused():
    u = parse_url("redis://:s%40cret@10.0.0.7:6380/3")
    assert (u.tls, u.host, u.port, u.db, u.username, u.password) == (False, "10.0.0.7", 6380, 3, None, "s@cret")
    assert "s@cret" not in repr(u)
    u = parse_url("rediss://app:pw@[::1]")
    assert (u.tls, u.host, u.port, u.db, u.username, u.password) == (True, "::1", 6379, 0, "app", "pw")
    for bad in ("http://h:1", "redis://", "redis://h:99999", "redis://h/zero", "redis://h/0?db=1", "h:6379"):
        with pytest.raises(ValueError):
            parse_url(bad)


def test_the_password_is_the_argument_else_the_urls_else_the_environments():
    env = {"GREENPOOL_REDIS_PASSWORD": "from-env"}

    def password(url, pw=None):
        return connect(url, pw, environ=env).connection_pool.connection_kwargs["password"]

    assert password("redis://:in-url@127.0.0.1:1", "given") == "given"
    assert password("redis://:in-url@127.0.0.1:1") == "in-url"
    assert password("redis://127.0.0.1:1") == "from-env"
    assert connect("redis://127.0.0.1:1", environ={}).connection_pool.connection_kwargs["password"] is None


def test_rediss_keeps_the_cooperative_tls_connection_class():
    assert connect("rediss://127.0.0.1:1").connection_pool.connection_class is GreenSSLConnection
    assert connect("redis://127.0.0.1:1").connection_pool.connection_class is GreenConnection


def test_200_green_threads_interleave_incr_get_and_pipelines_with_correct_results(client):
    in_flight = peak = 0

    def worker(i):
        nonlocal in_flight, peak
        for n in range(5):
            in_flight += 1
            peak = max(peak, in_flight)
            client.incr("shared")
            client.set(f"own:{i}", n)
            assert client.get(f"own:{i}") == str(n).encode()
            with client.pipeline() as pipe:  # MULTI/EXEC: both or neither
                pipe.incrby("piped", 2).rpush(f"list:{i}", n)
                assert pipe.execute() is not None
            in_flight -= 1
        return i

    pool = GreenPool(200)
    assert sorted(pool.imap(worker, range(200))) == list(range(200))
    assert int(client.get("shared")) == 200 * 5
    assert int(client.get("piped")) == 200 * 5 * 2
    assert all(client.lrange(f"list:{i}", 0, -1) == [b"0", b"1", b"2", b"3", b"4"] for i in range(200))
    assert peak > 50, "the green threads ran one after another instead of interleaving"
    assert client.connection_pool._created_connections <= client.connection_pool.max_connections


def test_a_full_pool_parks_callers_until_a_connection_is_free_or_its_timeout(redis_server):
    patient = connect(redis_server.url, max_connections=2, pool_timeout=5)
    impatient = connect(redis_server.url, max_connections=2, pool_timeout=0.3)
    with Ticker() as ticker:
        start = time.monotonic()
        holders = [spawn(r.blpop, f"never:{i}", 1) for r in (patient, impatient) for i in range(2)]
        sleep(0.1)  # each blocker now holds one of its pool's two connections for 1 s
        t0 = time.monotonic()
        with pytest.raises(redis.ConnectionError, match="No connection available"):
            impatient.ping()
        assert 0.25 < time.monotonic() - t0 < 0.8
        t0 = time.monotonic()
        assert patient.ping() is True  # parked until a blocker handed its connection back
        assert 0.4 < time.monotonic() - t0 < 2.0
        for g in holders:
            g.wait()
        end = time.monotonic()
    ticker.assert_hub_was_free(start, end)
    assert patient.connection_pool._created_connections == 2
    for r in (patient, impatient):
        r.close()  # connect() gave each client its own pool: closing the client disconnects it
        assert not r.connection_pool._available_connections[0].is_connected


def test_failed_connects_give_their_pool_slots_back():
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]  # bound, never listening: connects are refused
    r = connect(f"redis://127.0.0.1:{port}", max_connections=2, pool_timeout=0.2, retries=0)
    for _ in range(5):  # more failures than slots: a leaked slot would end in "No connection available"
        with pytest.raises(redis.ConnectionError, match="Connection refused|111"):
            r.ping()
    assert r.connection_pool._slots.counter == 2


def test_a_green_thread_waiting_in_blpop_leaves_the_hub_free(client):
    def pusher():
        sleep(0.3)  # while the main green thread is parked in BLPOP
        client.rpush("jobs", "x")

    with Ticker() as ticker:
        start = time.monotonic()
        assert client.blpop("empty", 2) is None  # the server answers nil after 2 s
        waited = time.monotonic() - start
        spawn(pusher)
        assert client.blpop("jobs", 2) == (b"jobs", b"x")
        end = time.monotonic()
    assert 1.9 < waited < 3.0
    ticker.assert_hub_was_free(start, end)


def test_xread_block_waits_cooperatively_for_a_stream_entry(client):
    def writer():
        sleep(0.3)
        client.xadd("events", {"n": 1})

    with Ticker() as ticker:
        start = time.monotonic()
        assert client.xread({"events": "$"}, block=500) in ([], {}, None)  # nothing within 0.5 s
        spawn(writer)
        got = client.xread({"events": "0-0"}, block=2000, count=1)
        end = time.monotonic()
    entries = got[b"events"][0] if isinstance(got, dict) else got[0][1]  # RESP3 gives a map, RESP2 a list
    assert entries[0][1] == {b"n": b"1"}
    ticker.assert_hub_was_free(start, end)


def test_retry_backoff_sleeps_cooperatively():
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
    retry = GreenRetry(ConstantBackoff(0.2), 3, (redis.ConnectionError,))
    r = GreenRedis(connection_pool=GreenConnectionPool(host="127.0.0.1", port=port, retry=retry))
    with Ticker() as ticker:
        start = time.monotonic()
        with pytest.raises(redis.ConnectionError):
            r.ping()
        end = time.monotonic()
    assert 0.55 < end - start < 2.0  # three back-offs of 0.2 s between four refused connects
    ticker.assert_hub_was_free(start, end)


def test_the_connect_timeout_also_bounds_a_slow_name_resolution(monkeypatch):
    real_execute = sockets.execute
    monkeypatch.setattr(sockets, "execute", lambda fn, *args: real_execute(time.sleep, 3))  # a DNS that hangs
    assert_connect_times_out_cooperatively("redis://redis.invalid:6379", connect_timeout=0.3)


def test_a_socket_timeout_raises_timeout_error_without_blocking_the_hub(redis_server):
    r = connect(redis_server.url, socket_timeout=0.3)
    with Ticker() as ticker:
        start = time.monotonic()
        with pytest.raises(redis.TimeoutError):
            r.blpop("empty", 5)  # the server would answer after 5 s; the socket gives up after 0.3 s
        end = time.monotonic()
    assert 0.25 < end - start < 1.5
    ticker.assert_hub_was_free(start, end)
    assert r.ping() is True  # the timed-out connection was dropped; the next command gets a fresh one
    r.connection_pool.disconnect()


def test_a_connect_timeout_against_a_full_backlog_stays_cooperative():
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(0)  # never accepted: one connection fills the queue, later SYNs are dropped
    fillers = [socket.socket() for _ in range(2)]
    for f in fillers:
        f.setblocking(False)
        f.connect_ex(listener.getsockname())
    host, port = listener.getsockname()
    try:
        assert_connect_times_out_cooperatively(f"redis://{host}:{port}")
    finally:
        for s in (*fillers, listener):
            s.close()


def test_host_names_resolve_on_an_os_thread_and_ip_literals_in_place(redis_server, monkeypatch):
    resolved = []
    real_execute = sockets.execute

    def recording_execute(fn, *args, **kwargs):
        resolved.append(args[0])
        return real_execute(fn, *args, **kwargs)

    monkeypatch.setattr(sockets, "execute", recording_execute)
    by_ip = connect(f"redis://127.0.0.1:{redis_server.port}")
    assert by_ip.ping() and resolved == []
    by_name = connect(f"redis://localhost:{redis_server.port}")
    assert by_name.ping() and resolved == ["localhost"]
    for r in (by_ip, by_name):
        r.connection_pool.disconnect()


def test_a_killed_server_gives_connection_error_promptly_and_a_restart_is_found_again(tmp_path):
    srv = RedisServer(tmp_path).start()
    r = connect(srv.url)
    try:
        assert r.set("k", "before") is True
        srv.kill()
        with Ticker() as ticker:
            start = time.monotonic()
            with pytest.raises(redis.ConnectionError):
                r.get("k")
            end = time.monotonic()
        assert end - start < 1.0
        ticker.assert_hub_was_free(start, end)
        srv.start()  # same port, empty (no persistence)
        assert r.get("k") is None  # same client, no reconfiguration: it reconnected by itself
        assert r.set("k", "after") is True and r.get("k") == b"after"
    finally:
        r.connection_pool.disconnect()
        srv.stop()


def test_lua_scripts_run_with_eval_and_register_script(client):
    assert client.eval("return redis.call('INCRBY', KEYS[1], ARGV[1])", 1, "n", 5) == 5
    add = client.register_script("return redis.call('INCRBY', KEYS[1], ARGV[1]) * 10")
    assert add(keys=["n"], args=[2]) == 70
    client.script_flush()  # EVALSHA then fails with NOSCRIPT: the Script object loads it again
    assert add(keys=["n"], args=[1]) == 80


def test_pubsub_delivers_messages_to_a_cooperative_waiter(client):
    pubsub = client.pubsub(ignore_subscribe_messages=True)
    assert isinstance(pubsub, GreenPubSub)
    got = []

    def listener():
        pubsub.subscribe("hints")
        while len(got) < 3:  # bounded by the test's messages
            message = pubsub.get_message(timeout=2.0)
            if message is not None:
                got.append(message["data"])

    with Ticker() as ticker:
        start = time.monotonic()
        assert pubsub.get_message(timeout=0.3) is None  # not subscribed yet: a cooperative wait, then None
        g = spawn(listener)
        with Timeout(5):
            while client.pubsub_numsub("hints")[0][1] < 1:  # until the listener is subscribed
                sleep(0.01)
        sleep(0.3)  # the listener is parked in get_message meanwhile
        for word in (b"one", b"two", b"three"):
            assert client.publish("hints", word) == 1
        g.wait()
        end = time.monotonic()
    assert got == [b"one", b"two", b"three"]
    ticker.assert_hub_was_free(start, end)
    with pytest.raises(NotImplementedError):
        pubsub.run_in_thread()
    pubsub.close()


def test_transactions_retry_watch_conflicts_and_redis_py_locks_are_refused(client):
    client.set("balance", 10)
    conflicts = []

    def spend(pipe):
        value = int(pipe.get("balance"))
        if not conflicts:  # another client changes the key between WATCH and EXEC, once
            conflicts.append(1)
            client.incr("balance", 5)
        pipe.multi()
        pipe.set("balance", value - 3)

    client.transaction(spend, "balance", watch_delay=0.05)
    assert int(client.get("balance")) == 12
    with pytest.raises(NotImplementedError):
        client.lock("name")
    with pytest.raises(NotImplementedError):
        client.keyspace_notifications()


def test_a_password_protected_server_takes_the_password_from_the_url_or_the_environment(tmp_path):
    srv = RedisServer(tmp_path, "--requirepass", "s3cret").start()
    clients = [connect(f"redis://:s3cret@127.0.0.1:{srv.port}/2"),
               connect(f"redis://127.0.0.1:{srv.port}/2", environ={"GREENPOOL_REDIS_PASSWORD": "s3cret"})]  # fmt: skip
    try:
        for r in clients:
            assert r.ping() is True
        with pytest.raises(redis.AuthenticationError):
            connect(srv.url, "wrong", environ={}).ping()
        with pytest.raises(redis.AuthenticationError):
            connect(srv.url, environ={}).set("k", 1)
    finally:
        for r in clients:
            r.connection_pool.disconnect()
        srv.stop()


def test_the_pubsub_lock_is_reentrant_for_its_green_thread_and_excludes_the_others(client):
    lock = client.pubsub()._lock
    events = []

    def other():
        with lock:
            events.append("other")

    with lock:
        with lock:  # re-entered by its owner (redis-py's reconnect path does that)
            g = spawn(other)
            sleep(0.01)  # the other green thread runs until it parks on the lock
            assert events == []  # a threading.RLock would have let it in: same OS thread
        events.append("owner done")
    g.wait()
    assert events == ["owner done", "other"]


def test_can_read_with_a_timeout_parks_the_green_thread_and_then_sees_a_reply(client):
    conn = client.connection_pool.get_connection()
    try:
        with Ticker() as ticker:
            start = time.monotonic()
            assert conn.can_read(timeout=0.4) is False  # idle connection: nothing arrives
            end = time.monotonic()
            conn.send_command("PING")
            assert conn.can_read(timeout=2) is True
            assert conn.read_response() == b"PONG"
        assert 0.35 < end - start < 1.5
        ticker.assert_hub_was_free(start, end)
    finally:
        client.connection_pool.release(conn)
