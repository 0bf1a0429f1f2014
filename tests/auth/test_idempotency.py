"""`Idempotency-Key` on POST /v1/jobs and /v1/piles against a real server: a retry returns the original and
runs nothing again; a different body is 422; keys are per token; bad keys are 400; keys expire with their
record; concurrent retries create one job."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import pytest
from auth_support import TOKENS, Api, tokens_env
from serverkit import Server

REPLAYED = "Idempotent-Replayed"


def key() -> str:
    return "test-" + uuid.uuid4().hex


@pytest.mark.timeout(30)
def test_retry_returns_the_same_job_and_runs_it_once(api: Api) -> None:
    k, body = key(), {"task": "sleep", "args": {"seconds": 0.3}}
    before = api.submitted()
    first = api.submit("alice", body, k)
    assert first.status_code == 202 and REPLAYED not in first.headers, first.text
    again = api.submit("alice", body, k)
    assert again.status_code == 202, again.text
    assert again.headers[REPLAYED] == "true"
    assert again.json()["id"] == first.json()["id"]
    assert again.headers["Location"] == first.headers["Location"]
    ended = api.submit("alice", body, k, params={"wait": 5})  # same rule as a fresh submission: 200 once ended
    assert ended.status_code == 200 and ended.json()["status"] == "succeeded", ended.text
    assert ended.json()["id"] == first.json()["id"] and ended.headers[REPLAYED] == "true"
    assert api.submitted() == before + 1


@pytest.mark.timeout(30)
def test_same_key_different_body_is_422(api: Api) -> None:
    k = key()
    assert api.submit("alice", {"task": "echo", "args": {"a": 1}}, k).status_code == 202
    before = api.submitted()
    response = api.submit("alice", {"task": "echo", "args": {"a": 2}}, k)
    assert response.status_code == 422, response.text
    assert response.json()["type"].endswith("/idempotency-key-reused")
    # key order and whitespace do not make a body different
    same = api.call("alice", "POST", "/v1/jobs", headers={"Idempotency-Key": k, "Content-Type": "application/json"},
                    data='{ "args" : {"a": 1},  "task":"echo" }')  # fmt: skip
    assert same.status_code == 202 and same.headers[REPLAYED] == "true", same.text
    # a pile with a job's key is a different request
    assert api.call("alice", "POST", "/v1/piles", headers={"Idempotency-Key": k},
                    json={"task": "echo", "items": [{"a": 1}]}).status_code == 422  # fmt: skip
    assert api.submitted() == before


@pytest.mark.timeout(30)
def test_keys_are_scoped_per_token(api: Api) -> None:
    k, body = key(), {"task": "echo", "args": {"who": "either"}}
    alices = api.submit("alice", body, k).json()
    bobs = api.submit("bob", body, k)
    assert bobs.status_code == 202 and REPLAYED not in bobs.headers
    assert bobs.json()["id"] != alices["id"]
    assert api.call("bob", "GET", f"/v1/jobs/{alices['id']}").status_code == 404
    assert api.submit("alice", body, k).json()["id"] == alices["id"]


@pytest.mark.timeout(30)
def test_piles_are_idempotent_too(api: Api) -> None:
    k, body = key(), {"task": "echo", "items": [{"i": 0}, {"i": 1}, {"i": 2}]}
    before = api.submitted()
    first = api.call("alice", "POST", "/v1/piles", headers={"Idempotency-Key": k}, json=body)
    again = api.call("alice", "POST", "/v1/piles", headers={"Idempotency-Key": k}, json=body)
    assert first.status_code == again.status_code == 201, again.text
    assert again.headers[REPLAYED] == "true" and again.json()["id"] == first.json()["id"]
    assert api.submitted() == before + 3


@pytest.mark.timeout(30)
@pytest.mark.parametrize("bad", ["", "x" * 256, "has space", "tab\there", "caf\u00e9"])
def test_a_bad_key_is_400(api: Api, bad: str) -> None:
    response = api.call("alice", "POST", "/v1/jobs", headers={"Idempotency-Key": bad.encode("utf-8")},
                        json={"task": "echo"})  # fmt: skip
    assert response.status_code == 400, response.text
    assert response.json()["parameter"] == "Idempotency-Key"


@pytest.mark.timeout(30)
def test_longest_key_and_no_key(api: Api) -> None:
    body = {"task": "echo"}
    longest = "~" * 255
    assert api.submit("alice", body, longest).status_code == 202
    assert api.submit("alice", body, longest).headers[REPLAYED] == "true"
    ids = {api.submit("alice", body).json()["id"] for _ in range(2)}  # without a key, two jobs
    assert len(ids) == 2


@pytest.mark.timeout(30)
def test_a_failed_request_does_not_use_up_the_key(api: Api) -> None:
    k = key()
    assert api.submit("alice", {"task": "no-such-task"}, k).status_code == 422
    response = api.submit("alice", {"task": "echo", "args": {"ok": True}}, k)
    assert response.status_code == 202 and REPLAYED not in response.headers


@pytest.mark.timeout(30)
def test_concurrent_retries_create_one_job(api: Api, auth_server: Server) -> None:
    k, body = key(), {"task": "sleep", "args": {"seconds": 0.5}}
    before = api.submitted()

    def send(_: int) -> str:
        helper = Api(auth_server.url)
        try:
            response = helper.submit("alice", body, k)
            assert response.status_code == 202, response.text
            return response.json()["id"]
        finally:
            helper.close()

    with ThreadPoolExecutor(16) as executor:
        ids = set(executor.map(send, range(32)))
    assert len(ids) == 1
    assert api.submitted() == before + 1


@pytest.mark.timeout(60)
def test_a_key_expires_with_its_record(start: Callable[..., Server]) -> None:
    server = start({"GREENPOOL_RESULT_TTL": "1", "GREENPOOL_TOKENS": tokens_env(TOKENS["alice"])})
    api = Api(server.url)
    try:
        k, body = key(), {"task": "echo"}
        first = api.submit("alice", body, k, params={"wait": 5}).json()
        assert api.submit("alice", body, k).headers[REPLAYED] == "true"
        deadline = time.monotonic() + 10
        while api.call("alice", "GET", f"/v1/jobs/{first['id']}").status_code != 404:
            assert time.monotonic() < deadline, "the record never expired"
            time.sleep(0.2)
        again = api.submit("alice", body, k)
        assert again.status_code == 202 and REPLAYED not in again.headers
        assert again.json()["id"] != first["id"]
    finally:
        api.close()


@pytest.mark.timeout(60)
def test_idempotency_without_tokens(start: Callable[..., Server]) -> None:
    server = start({})
    api = Api(server.url)
    try:
        k = key()
        first = api.submit(None, {"task": "echo"}, k).json()
        assert api.submit(None, {"task": "echo"}, k).json()["id"] == first["id"]
    finally:
        api.close()
