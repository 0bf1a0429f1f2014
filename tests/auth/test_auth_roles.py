"""Bearer tokens and roles against a real server: 401/403, open routes, ownership (another token's job or
pile is a 404), admin sees and does everything, /metrics configurable, tokens file, whoami."""

from __future__ import annotations

import pytest
from auth_support import CHALLENGE, TOKENS, Api, bearer, tokens_env
from serverkit import Server

API_CALLS = [  # (method, path, body) for every route that needs a token
    ("GET", "/v1/tasks", None),
    ("POST", "/v1/jobs", {"task": "echo"}),
    ("GET", "/v1/jobs", None),
    ("GET", "/v1/jobs/0123", None),
    ("DELETE", "/v1/jobs/0123", None),
    ("POST", "/v1/piles", {"task": "echo", "items": [{}]}),
    ("GET", "/v1/piles/0123", None),
    ("POST", "/v1/piles/0123/jobs", {"task": "echo", "items": [{}]}),
    ("POST", "/v1/piles/0123/close", None),
    ("GET", "/v1/piles/0123/results", None),
    ("POST", "/v1/map", {"task": "echo", "items": [{}]}),
    ("GET", "/v1/pool", None),
    ("PATCH", "/v1/pool", {"size": 8}),
    ("GET", "/v1/whoami", None),
]


@pytest.mark.timeout(30)
@pytest.mark.parametrize(("method", "path", "body"), API_CALLS)
def test_missing_token_is_401_with_a_challenge(api: Api, method: str, path: str, body: dict | None) -> None:
    response = api.call(None, method, path, json=body)
    assert response.status_code == 401, response.text
    assert response.headers["WWW-Authenticate"] == CHALLENGE
    assert response.headers["Content-Type"] == "application/problem+json"
    assert response.json()["type"].endswith("/unauthorized")


@pytest.mark.timeout(30)
@pytest.mark.parametrize(
    ("authorization", "error"),
    [
        ("Bearer wrong-secret-0123456789", ', error="invalid_token"'),
        ("Bearer " + TOKENS["alice"][2] + "x", ', error="invalid_token"'),  # a prefix of nothing, a near miss
        ("bearer " + TOKENS["alice"][2][:-1], ', error="invalid_token"'),
        ("Bearer ", ', error="invalid_request"'),
        ("Basic " + TOKENS["alice"][2], ""),
        (TOKENS["alice"][2], ""),
    ],
)
def test_bad_token_is_401(api: Api, authorization: str, error: str) -> None:
    response = api.call(None, "GET", "/v1/pool", headers={"Authorization": authorization})
    assert response.status_code == 401, response.text
    assert response.headers["WWW-Authenticate"] == CHALLENGE + error
    assert TOKENS["alice"][2] not in response.text  # the token is never echoed


@pytest.mark.timeout(30)
def test_scheme_is_case_insensitive_and_every_token_works(api: Api) -> None:
    for name, role, secret in TOKENS.values():
        response = api.call(None, "GET", "/v1/whoami", headers={"Authorization": f"bEaReR  {secret} "})
        assert response.status_code == 200, response.text
        assert response.json() == {"name": name, "role": role}


@pytest.mark.timeout(30)
@pytest.mark.parametrize("path", ["/healthz", "/readyz", "/openapi.yaml", "/", "/static/dashboard.js", "/metrics"])
def test_open_routes_need_no_token(api: Api, path: str) -> None:
    assert api.call(None, "GET", path).status_code == 200
    assert api.call(None, "GET", path, headers={"Authorization": "Bearer nonsense-token-here"}).status_code == 200


@pytest.mark.timeout(30)
def test_unknown_routes_and_methods_answer_as_without_auth(api: Api) -> None:
    assert api.call(None, "GET", "/v1/nothing").status_code == 404
    assert api.call(None, "PUT", "/v1/pool").status_code == 405
    assert api.call(None, "OPTIONS", "/v1/pool").status_code == 200


@pytest.mark.timeout(30)
def test_submit_token_cannot_resize_admin_can(api: Api) -> None:
    response = api.call("alice", "PATCH", "/v1/pool", json={"size": 3})
    assert response.status_code == 403, response.text
    assert response.json()["type"].endswith("/forbidden")
    assert api.call("root", "GET", "/v1/pool").json()["size"] == 8  # nothing changed
    response = api.call("root", "PATCH", "/v1/pool", json={"size": 9})
    assert response.status_code == 200 and response.json()["size"] == 9
    assert api.call("root", "PATCH", "/v1/pool", json={"size": 8}).status_code == 200


@pytest.mark.timeout(30)
def test_submit_token_reads_pool_and_tasks(api: Api) -> None:
    assert api.call("alice", "GET", "/v1/pool").status_code == 200
    assert api.call("alice", "GET", "/v1/tasks").status_code == 200


@pytest.mark.timeout(30)
def test_submit_token_cannot_read_cancel_or_list_another_tokens_job(api: Api) -> None:
    job = api.job("alice", {"task": "sleep", "args": {"seconds": 5}})
    unknown = api.call("bob", "GET", "/v1/jobs/0000000000000000ffffffffffffffff")
    for method in ("GET", "DELETE"):
        response = api.call("bob", method, f"/v1/jobs/{job['id']}")
        assert response.status_code == 404, response.text
        body, expected = response.json(), unknown.json()  # the same answer as for an id that never existed
        assert body["type"] == expected["type"] and body["title"] == expected["title"]
        assert body["detail"] == expected["detail"].replace("0000000000000000ffffffffffffffff", job["id"])
    assert api.call("alice", "GET", f"/v1/jobs/{job['id']}").json()["status"] in ("queued", "running")
    bobs = api.call("bob", "GET", "/v1/jobs", params={"limit": 1000}).json()["jobs"]
    assert job["id"] not in {j["id"] for j in bobs}
    alices = api.call("alice", "GET", "/v1/jobs", params={"limit": 1000}).json()["jobs"]
    assert job["id"] in {j["id"] for j in alices}
    # the owner cancels its own job
    response = api.call("alice", "DELETE", f"/v1/jobs/{job['id']}")
    assert response.status_code == 200 and response.json()["status"] == "cancelled"


@pytest.mark.timeout(30)
def test_listing_is_filtered_before_paging(api: Api) -> None:
    mine = [api.job("bob", {"task": "echo", "args": {"n": i}})["id"] for i in range(3)]
    for _ in range(5):
        api.job("alice", {"task": "echo"})
    page = api.call("bob", "GET", "/v1/jobs", params={"limit": 2}).json()
    assert [j["id"] for j in page["jobs"]] == mine[:0:-1]
    rest = api.call("bob", "GET", "/v1/jobs", params={"limit": 2, "cursor": page["next_cursor"]}).json()
    assert mine[0] in [j["id"] for j in rest["jobs"]]


@pytest.mark.timeout(30)
def test_admin_reads_lists_and_cancels_any_job(api: Api) -> None:
    job = api.job("alice", {"task": "sleep", "args": {"seconds": 5}})
    assert api.call("root", "GET", f"/v1/jobs/{job['id']}").status_code == 200
    listed = api.call("root", "GET", "/v1/jobs", params={"limit": 1000}).json()["jobs"]
    assert job["id"] in {j["id"] for j in listed}
    response = api.call("root", "DELETE", f"/v1/jobs/{job['id']}")
    assert response.status_code == 200 and response.json()["status"] == "cancelled"


@pytest.mark.timeout(30)
def test_submit_token_cannot_touch_another_tokens_pile(api: Api) -> None:
    created = api.call("alice", "POST", "/v1/piles", json={"task": "echo", "items": [{"a": 1}], "open": True})
    assert created.status_code == 201, created.text
    pile = created.json()["id"]
    for method, path, body in [
        ("GET", f"/v1/piles/{pile}", None),
        ("GET", f"/v1/piles/{pile}/results", None),
        ("POST", f"/v1/piles/{pile}/jobs", {"task": "echo", "items": [{}]}),
        ("POST", f"/v1/piles/{pile}/close", None),
    ]:
        response = api.call("bob", method, path, json=body)
        assert response.status_code == 404, (method, path, response.text)
        assert response.json()["type"].endswith("/pile-not-found")
    summary = api.call("alice", "GET", f"/v1/piles/{pile}").json()
    assert summary["size"] == 1 and not summary["closed"]  # bob's add and close changed nothing
    # the pile's jobs are alice's too
    job_id = api.call("alice", "POST", f"/v1/piles/{pile}/jobs", json={"task": "echo", "items": [{}]}).json()
    assert api.call("bob", "GET", f"/v1/jobs/{job_id['added'][0]['job_id']}").status_code == 404
    assert api.call("alice", "POST", f"/v1/piles/{pile}/close").status_code == 200
    for who in ("alice", "root"):
        response = api.call(who, "GET", f"/v1/piles/{pile}/results", timeout=10)
        assert response.status_code == 200, response.text
        assert len(response.text.strip().splitlines()) == 2


@pytest.mark.timeout(30)
def test_a_maps_pile_belongs_to_its_caller(api: Api) -> None:
    response = api.call("alice", "POST", "/v1/map", json={"task": "echo", "items": [{"x": 1}, {"x": 2}]})
    assert response.status_code == 200, response.text
    location = response.headers["Content-Location"]
    assert api.call("bob", "GET", location).status_code == 404
    assert api.call("alice", "GET", location).json()["size"] == 2
    assert api.call("root", "GET", location).status_code == 200


@pytest.mark.timeout(30)
def test_submit_token_streams_its_own_pile_and_whoami(api: Api) -> None:
    response = api.call("bob", "POST", "/v1/piles", json={"task": "echo", "items": [{"i": 0}, {"i": 1}]})
    pile = response.json()["id"]
    stream = api.call("bob", "GET", f"/v1/piles/{pile}/results", params={"order": "submitted"})
    assert stream.status_code == 200 and stream.text.count("\n") == 2
    assert api.call("bob", "GET", "/v1/whoami").json() == {"name": "bob", "role": "submit"}
    assert api.call("root", "GET", "/v1/whoami").json() == {"name": "root", "role": "admin"}


# -- configuration variants --------------------------------------------------------------------------------
@pytest.mark.timeout(60)
def test_metrics_can_require_a_token(start) -> None:
    server: Server = start({"GREENPOOL_TOKENS": tokens_env(TOKENS["alice"]), "GREENPOOL_METRICS_PUBLIC": "false"})
    api = Api(server.url)
    try:
        response = api.call(None, "GET", "/metrics")
        assert response.status_code == 401 and response.headers["WWW-Authenticate"] == CHALLENGE
        assert api.call("alice", "GET", "/metrics").status_code == 200
        assert api.call(None, "GET", "/healthz").status_code == 200
    finally:
        api.close()


@pytest.mark.timeout(60)
def test_tokens_file_and_two_secrets_for_one_name(start, tmp_path) -> None:
    tokens = tmp_path / "tokens"
    tokens.write_text(
        "# name role secret\n"
        "\n"
        "carol submit carol-first-secret-0000\n"
        "  carol   submit   carol-second-secret-000  \n"
        "ops admin ops-secret-00000000000\n"
    )
    server: Server = start({"GREENPOOL_TOKENS_FILE": str(tokens), "GREENPOOL_TOKENS": tokens_env(TOKENS["bob"])})
    api = Api(server.url)
    first, second, ops = (
        {"Authorization": "Bearer carol-first-secret-0000"},
        {"Authorization": "Bearer carol-second-secret-000"},
        {"Authorization": "Bearer ops-secret-00000000000"},
    )
    try:
        assert api.call(None, "GET", "/v1/pool").status_code == 401
        job = api.call(None, "POST", "/v1/jobs", headers=first, json={"task": "echo"}).json()
        assert api.call(None, "GET", f"/v1/jobs/{job['id']}", headers=second).status_code == 200  # same principal
        assert api.call("bob", "GET", f"/v1/jobs/{job['id']}").status_code == 404  # bob from GREENPOOL_TOKENS
        assert api.call(None, "PATCH", "/v1/pool", headers=ops, json={"size": 5}).json()["size"] == 5
        assert api.call(None, "PATCH", "/v1/pool", headers=first, json={"size": 5}).status_code == 403
        assert "carol-first-secret" not in server.log() and TOKENS["bob"][2] not in server.log()
    finally:
        api.close()


@pytest.mark.timeout(60)
def test_without_tokens_everything_is_open(start) -> None:
    server: Server = start({})
    api = Api(server.url)
    try:
        assert api.call(None, "GET", "/v1/whoami").json() == {"name": None, "role": "admin"}
        assert api.call(None, "PATCH", "/v1/pool", json={"size": 3}).status_code == 200
        # a token is ignored while authentication is off
        assert api.call(None, "GET", "/v1/pool", headers=bearer("alice")).status_code == 200
    finally:
        api.close()
