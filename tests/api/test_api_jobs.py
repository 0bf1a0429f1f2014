"""The job routes against a real server: lifecycle, long-polls, listing, and every status code of design.md §4."""

from __future__ import annotations

import time
from datetime import datetime

import pytest
from api_support import PROBLEM_JSON, Server, ServerFactory, assert_problem, error_fields

pytestmark = pytest.mark.timeout(60)

MAX_BODY = 4096
JOB_KEYS = {"id", "task", "args", "status", "result", "error", "pile", "pool", "timeout", "submitted_at", "started_at",
            "finished_at"}  # fmt: skip


@pytest.fixture(scope="module")
def api(module_server_factory: ServerFactory) -> Server:
    """One server for this module: pool of 4, a small body limit, the test plugin tasks."""
    return module_server_factory.start(env={"GREENPOOL_POOL_SIZE": "4", "GREENPOOL_MAX_BODY_BYTES": str(MAX_BODY)})


def ts(value: str) -> datetime:
    assert value.endswith("Z"), value
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


def wait_running(api: Server, job_id: str, timeout: float = 5.0) -> dict:
    """Poll a job until it is running (bounded); there is no long-poll for 'has started'."""
    deadline = time.monotonic() + timeout
    job = api.job(job_id)
    for _ in range(500):
        if job["status"] != "queued" or time.monotonic() > deadline:
            break
        time.sleep(0.01)
        job = api.job(job_id)
    assert job["status"] == "running", job
    return job


# -- health ------------------------------------------------------------------------------------------
def test_healthz_and_readyz(api: Server) -> None:
    resp = api.get("/healthz")
    health = resp.json()
    assert resp.status_code == 200 and health["status"] == "ok", health
    assert set(health) == {"status", "boot_id", "started_at"}, health
    assert health["boot_id"] == api.get("/v1/pool").json()["boot_id"]
    resp = api.get("/readyz")
    assert resp.status_code == 200 and resp.json()["status"] == "ready"


def test_a_restart_shows_as_a_new_boot_id(server_factory: ServerFactory) -> None:
    first = server_factory.start()
    before = first.get("/healthz").json()
    first.stop()
    after = server_factory.start().get("/healthz").json()
    assert after["boot_id"] != before["boot_id"], (before, after)
    assert after["started_at"] >= before["started_at"], (before, after)


def test_tasks_lists_builtins_and_plugins(api: Server) -> None:
    resp = api.get("/v1/tasks")
    assert resp.status_code == 200
    tasks = {t["name"]: t for t in resp.json()["tasks"]}
    assert {"sleep", "echo", "http", "fail", "api_block"} <= set(tasks)
    assert tasks["api_block"]["blocking"] is True
    assert tasks["sleep"]["blocking"] is False
    assert "seconds" in tasks["sleep"]["args_schema"]["properties"]


# -- the lifecycle -----------------------------------------------------------------------------------
def test_job_lifecycle_submit_poll_result(api: Server) -> None:
    args = {"a": 1, "b": [1, "two", None], "c": {"d": True}}
    resp = api.post("/v1/jobs", json={"task": "echo", "args": args})
    assert resp.status_code == 202, resp.text
    assert resp.headers["Content-Type"].startswith("application/json")
    job = resp.json()
    assert set(job) == JOB_KEYS
    assert job["task"] == "echo" and job["args"] == args and job["timeout"] is None and job["pile"] is None
    assert job["status"] in ("queued", "running", "succeeded")
    location = resp.headers["Location"]
    assert location.endswith(f"/v1/jobs/{job['id']}"), location

    path = location[location.index("/v1/") :]
    done = api.job(job["id"], wait=10)
    assert api.get(path).json() == done
    assert done["status"] == "succeeded"
    assert done["result"] == args and done["error"] is None
    assert ts(done["submitted_at"]) <= ts(done["started_at"]) <= ts(done["finished_at"])


def test_submit_wait_answers_200_when_ended_and_202_when_not(api: Server) -> None:
    resp = api.post("/v1/jobs", params={"wait": 60}, json={"task": "echo", "args": {"x": 1}})  # 60 = the max
    assert resp.status_code == 200, resp.text
    assert resp.json()["status"] == "succeeded" and resp.json()["result"] == {"x": 1}
    assert resp.headers["Location"].endswith("/v1/jobs/" + resp.json()["id"])

    t0 = time.monotonic()
    resp = api.post("/v1/jobs", params={"wait": 0.3}, json={"task": "sleep", "args": {"seconds": 30}})
    elapsed = time.monotonic() - t0
    assert resp.status_code == 202, resp.text
    assert resp.json()["status"] == "running"
    assert 0.25 <= elapsed < 5, elapsed
    assert resp.headers["Location"].endswith("/v1/jobs/" + resp.json()["id"])
    assert api.delete(f"/v1/jobs/{resp.json()['id']}").status_code == 200


def test_get_wait_long_polls_until_the_job_ends(api: Server) -> None:
    t0 = time.monotonic()
    job = api.submit("sleep", {"seconds": 1.0})
    done = api.job(job["id"], wait=10)
    elapsed = time.monotonic() - t0
    assert done["status"] == "succeeded" and done["result"] == {"slept": 1.0}
    assert 0.9 <= elapsed < 5, elapsed

    job = api.submit("sleep", {"seconds": 30})
    t0 = time.monotonic()
    still = api.job(job["id"], wait=0.3)  # ends by the wait, not the job: 200 with the job as it is
    assert 0.25 <= time.monotonic() - t0 < 5
    assert still["status"] in ("queued", "running") and still["finished_at"] is None
    assert api.delete(f"/v1/jobs/{job['id']}").json()["status"] == "cancelled"


def test_failing_task_ends_failed_with_error_type(api: Server) -> None:
    resp = api.post("/v1/jobs", params={"wait": 5}, json={"task": "fail", "args": {"message": "kaput"}})
    assert resp.status_code == 200, resp.text
    job = resp.json()
    assert job["status"] == "failed"
    assert job["error"]["type"] == "ValueError"
    assert "kaput" in job["error"]["message"]
    assert job["result"] is None and job["finished_at"] is not None
    assert set(job["error"]) == {"type", "message"}  # the traceback is in the log only


def test_failing_task_logs_a_warning_with_its_traceback(api: Server) -> None:
    """The server's log has one `warning` for the failed job: its type, message and traceback."""
    job = api.post("/v1/jobs", params={"wait": 5}, json={"task": "fail", "args": {"message": "traced"}}).json()
    assert job["status"] == "failed", job
    warnings = [r for r in api.log_records() if r.get("job_id") == job["id"] and r["level"] == "warning"]
    assert len(warnings) == 1, warnings
    line = warnings[0]
    assert line["logger"] == "greenpool.tasks" and line["task"] == "fail", line
    assert line["error_type"] == "ValueError" and line["error_message"] == "traced", line
    assert line["exc"].startswith("Traceback (most recent call last):"), line
    assert "raise ValueError(message)" in line["exc"] and line["exc"].endswith("ValueError: traced"), line


# -- cancel ------------------------------------------------------------------------------------------
def test_delete_running_job_200_then_409(api: Server) -> None:
    job = api.submit("sleep", {"seconds": 30})
    wait_running(api, job["id"])
    resp = api.delete(f"/v1/jobs/{job['id']}")
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert body["status"] == "cancelled" and body["started_at"] is not None and body["finished_at"] is not None
    assert body["error"]["type"]
    assert api.job(job["id"], wait=5)["status"] == "cancelled"
    again = api.delete(f"/v1/jobs/{job['id']}")
    assert again.status_code == 409 and again.headers["Content-Type"].startswith(PROBLEM_JSON)
    assert "cancelled" in again.json()["detail"]


def test_delete_ended_job_409(api: Server) -> None:
    job = api.submit("echo", {"k": "v"}, wait=5)
    assert job["status"] == "succeeded"
    resp = api.delete(f"/v1/jobs/{job['id']}")
    assert resp.status_code == 409 and resp.headers["Content-Type"].startswith(PROBLEM_JSON)
    assert "succeeded" in resp.json()["detail"]
    assert api.job(job["id"])["status"] == "succeeded"


def test_delete_ended_job_409_problem_body(api: Server) -> None:
    job = api.submit("echo", {}, wait=5)
    assert_problem(api.delete(f"/v1/jobs/{job['id']}"), 409)


def test_unknown_job_404(api: Server) -> None:
    assert_problem(api.get("/v1/jobs/0123456789abcdef0123456789abcdef"), 404)
    assert_problem(api.get("/v1/jobs/no-such-job", params={"wait": 1}), 404)
    assert_problem(api.delete("/v1/jobs/no-such-job"), 404)


# -- listing -----------------------------------------------------------------------------------------
def test_list_jobs_status_filter_limit_and_cursor_paging(api: Server) -> None:
    mine = [api.submit("echo", {"i": i}, wait=5)["id"] for i in range(5)]
    running = api.submit("sleep", {"seconds": 30})["id"]
    wait_running(api, running)

    resp = api.get("/v1/jobs", params={"limit": 2})
    assert resp.status_code == 200, resp.text
    page = resp.json()
    assert [j["id"] for j in page["jobs"]] == [running, mine[4]]  # newest first
    assert isinstance(page["next_cursor"], str)

    # Page through everything with limit=2: no gaps, no duplicates, newest first, ends with next_cursor null.
    seen: list[dict] = []
    cursor = None
    for _ in range(200):
        params = {"limit": 2} if cursor is None else {"limit": 2, "cursor": cursor}
        page = api.get("/v1/jobs", params=params).json()
        assert 1 <= len(page["jobs"]) <= 2
        seen.extend(page["jobs"])
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert cursor is None, "paging did not end"
    ids = [j["id"] for j in seen]
    assert len(ids) == len(set(ids))
    assert ids[:6] == [running, *reversed(mine)]
    everything = api.get("/v1/jobs", params={"limit": 1000}).json()
    assert everything["next_cursor"] is None
    assert [j["id"] for j in everything["jobs"]] == ids
    times = [ts(j["submitted_at"]) for j in seen]
    assert times == sorted(times, reverse=True)

    running_page = api.get("/v1/jobs", params={"status": "running"}).json()
    assert [j["id"] for j in running_page["jobs"]] == [running]
    succeeded = api.get("/v1/jobs", params={"status": "succeeded", "limit": 1000}).json()["jobs"]
    assert set(mine) <= {j["id"] for j in succeeded}
    assert all(j["status"] == "succeeded" for j in succeeded)
    exact = api.get("/v1/jobs", params={"status": "succeeded", "limit": len(succeeded)}).json()
    assert exact["next_cursor"] is None and len(exact["jobs"]) == len(succeeded)

    api.delete(f"/v1/jobs/{running}")
    cancelled = api.get("/v1/jobs", params={"status": "cancelled", "limit": 1}).json()
    assert [j["id"] for j in cancelled["jobs"]] == [running]
    assert api.get("/v1/jobs", params={"status": "running"}).json() == {"jobs": [], "next_cursor": None}


@pytest.mark.parametrize(
    "params, parameter",
    [
        ({"status": "bogus"}, "status"),
        ({"limit": "0"}, "limit"),
        ({"limit": "1001"}, "limit"),
        ({"limit": "ten"}, "limit"),
        ({"cursor": "not-a-cursor"}, "cursor"),
    ],
)
def test_list_jobs_bad_query_400(api: Server, params: dict, parameter: str) -> None:
    problem = assert_problem(api.get("/v1/jobs", params=params), 400)
    assert problem.get("parameter") == parameter, problem


# -- 400 / 413 / 415 / 422 on submit -----------------------------------------------------------------
def post_raw(api: Server, data: bytes | str, content_type: str | None = "application/json", **kw: object):
    headers = {} if content_type is None else {"Content-Type": content_type}
    return api.post("/v1/jobs", data=data, headers=headers, **kw)


@pytest.mark.parametrize("body", [b'{"task": "echo"', b"not json at all", b"", b'{"task": "echo", }', b"\xff\xfe"])
def test_malformed_json_400(api: Server, body: bytes) -> None:
    assert_problem(post_raw(api, body), 400)


@pytest.mark.parametrize("wait", ["abc", "-1", "61", "nan", "inf", "", "1e400"])
def test_bad_wait_query_param_400(api: Server, wait: str) -> None:
    resp = api.post("/v1/jobs", params={"wait": wait}, json={"task": "echo", "args": {}})
    problem = assert_problem(resp, 400)
    assert problem.get("parameter") == "wait"
    job = api.submit("echo", {})
    assert assert_problem(api.get(f"/v1/jobs/{job['id']}", params={"wait": wait}), 400).get("parameter") == "wait"


def test_body_too_large_413(api: Server) -> None:
    big = {"task": "echo", "args": {"blob": "x" * (MAX_BODY + 10)}}
    problem = assert_problem(api.post("/v1/jobs", json=big), 413)
    assert str(MAX_BODY) in problem["detail"]

    # just under the limit is fine
    payload = '{"task": "echo", "args": {"blob": "' + "z" * (MAX_BODY - 100) + '"}}'
    assert len(payload) <= MAX_BODY
    assert post_raw(api, payload).status_code == 202
    assert_problem(api.patch("/v1/pool", json={"size": 4, "pad": "p" * MAX_BODY}), 413)


@pytest.mark.parametrize(
    "content_type", ["text/plain", None, "application/x-www-form-urlencoded", "multipart/form-data; boundary=x"]
)
def test_wrong_content_type_415(api: Server, content_type: str | None) -> None:
    assert_problem(post_raw(api, b'{"task": "echo", "args": {}}', content_type), 415)


def test_chunked_body_accepted(api: Server) -> None:
    def chunks():
        yield b'{"task": "echo", '
        yield b'"args": {"a": 1}}'

    resp = api.post("/v1/jobs", params={"wait": 5}, data=chunks(), headers={"Content-Type": "application/json"})
    assert resp.status_code == 200, resp.text
    assert resp.json()["result"] == {"a": 1}


def test_chunked_body_too_large_413(api: Server) -> None:
    def chunks():  # no Content-Length: the limit has to be enforced while reading
        yield b'{"task": "echo", "args": {"blob": "'
        for _ in range(10):
            yield b"y" * 1000
        yield b'"}}'

    assert_problem(post_raw(api, chunks()), 413)


def test_json_content_type_with_charset_accepted(api: Server) -> None:
    resp = post_raw(api, b'{"task": "echo", "args": {}}', "application/json; charset=utf-8")
    assert resp.status_code == 202, resp.text


@pytest.mark.parametrize(
    "body, fields",
    [
        ({"task": "no_such_task", "args": {}}, ["task"]),
        ({"args": {}}, ["task"]),
        ({"task": 5}, ["task"]),
        ({"task": ""}, ["task"]),
        ({"task": "sleep", "args": {}}, ["args.seconds"]),
        ({"task": "sleep"}, ["args.seconds"]),
        ({"task": "sleep", "args": {"seconds": 1, "extra": 2}}, ["args.extra"]),
        ({"task": "sleep", "args": {"seconds": "1"}}, ["args.seconds"]),
        ({"task": "sleep", "args": {"seconds": True}}, ["args.seconds"]),
        ({"task": "sleep", "args": {"seconds": -1}}, ["args.seconds"]),
        ({"task": "fail", "args": {"message": 7}}, ["args.message"]),
        ({"task": "echo", "args": [1, 2]}, ["args"]),
        ({"task": "echo", "args": {}, "bogus": 1}, ["bogus"]),
        ({"task": "echo", "args": {}, "timeout": 0}, ["timeout"]),
        ({"task": "echo", "args": {}, "timeout": -3}, ["timeout"]),
        ({"task": "echo", "args": {}, "timeout": "5"}, ["timeout"]),
        ({"task": "echo", "args": {}, "timeout": True}, ["timeout"]),
        ({"task": "echo", "args": {}, "timeout": 1e9}, ["timeout"]),
    ],
)
def test_invalid_job_422_names_the_field(api: Server, body: dict, fields: list[str]) -> None:
    problem = assert_problem(api.post("/v1/jobs", json=body), 422)
    assert error_fields(problem) == fields, problem
    if body.get("task") == "no_such_task":
        assert problem["type"].endswith("unknown-task")
        assert "echo" in problem["detail"]  # says what is known


@pytest.mark.parametrize("body", [b"[1, 2]", b'"a string"', b"3", b"null", b"true"])
def test_body_not_an_object_422(api: Server, body: bytes) -> None:
    assert_problem(post_raw(api, body), 422)


def test_job_timeout_accepted_and_reported(api: Server) -> None:
    job = api.submit("echo", {"a": 1}, timeout=5, wait=5)
    assert job["timeout"] == 5 and job["status"] == "succeeded"


# -- other routes' errors are problems too -----------------------------------------------------------
@pytest.mark.parametrize(
    "method, path",
    [("PUT", "/v1/jobs"), ("DELETE", "/v1/jobs"), ("PATCH", "/v1/jobs"), ("POST", "/v1/pool"),
     ("PUT", "/v1/jobs/abc"), ("POST", "/healthz")],
)  # fmt: skip
def test_wrong_method_405_is_problem_json(api: Server, method: str, path: str) -> None:
    resp = api.request(method, path, json={})
    assert resp.status_code == 405, resp.text
    assert resp.headers["Content-Type"].split(";")[0] == PROBLEM_JSON
    body = resp.json()
    assert body["status"] == 405 and body["title"] and body["type"]
    assert "Allow" in resp.headers


def test_wrong_method_405_problem_has_detail(api: Server) -> None:
    assert_problem(api.request("PUT", "/v1/jobs", json={}), 405)


def test_unknown_route_404_is_problem_json(api: Server) -> None:
    resp = api.get("/v1/nothing-here")
    assert resp.status_code == 404
    assert resp.headers["Content-Type"].split(";")[0] == PROBLEM_JSON
    assert resp.json()["status"] == 404


def test_unknown_route_404_problem_has_detail(api: Server) -> None:
    assert_problem(api.get("/v1/nothing-here"), 404)


def test_problem_content_type_exact(api: Server) -> None:
    resp = api.get("/v1/jobs/nope")
    assert resp.headers["Content-Type"].split(";")[0] == PROBLEM_JSON
