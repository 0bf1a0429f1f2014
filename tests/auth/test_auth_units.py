"""Units of service.auth and service.idempotency: token parsing, constant-time comparison through
hmac.compare_digest against every token, the policy table covering every served route, key bounds."""

from __future__ import annotations

import json
import subprocess
import sys
from types import SimpleNamespace

import pytest
from serverkit import REPO

from service.api import auth
from service.api.auth import ADMIN, POLICY, SUBMIT, AuthMiddleware, Principal, load_tokens
from service.api.errors import Forbidden, Unauthorized
from service.api.idempotency import IdempotencyStore
from service.config import Config, ConfigError
from service.engine.errors import JobNotFound, PileNotFound
from service.storage.memory import MemoryIdempotencyKeys

SECRET_A, SECRET_B, SECRET_C = "a" * 16, "b-secret-0123456789", "c~secret/0123456789=="


@pytest.mark.timeout(5)
def test_tokens_from_the_environment_and_a_file(tmp_path) -> None:
    path = tmp_path / "tokens"
    path.write_text(f"# comment\n\nops admin {SECRET_C}\n")
    tokens = load_tokens(f" alice:submit:{SECRET_A} , bob:submit:{SECRET_B}", str(path))
    assert [(t.name, t.role) for t in tokens] == [("alice", SUBMIT), ("bob", SUBMIT), ("ops", ADMIN)]
    assert all(SECRET_A not in repr(t) for t in tokens)  # only a digest is kept
    assert load_tokens("", "") == ()


@pytest.mark.timeout(5)
@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("alice:submit", "not name:role:secret"),
        (f"alice:root:{SECRET_A}", "role must be one of submit, admin"),
        ("alice:submit:short", "at least 16 characters"),
        (f"al ice:submit:{SECRET_A}", "the name must be"),
        (f"alice:submit:{SECRET_A},bob:admin:{SECRET_A}", "already configured"),
        (f"alice:submit:{SECRET_A},alice:admin:{SECRET_B}", "two roles"),
    ],
)
def test_bad_tokens_are_refused_without_echoing_the_secret(spec: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message) as raised:
        load_tokens(spec)
    assert SECRET_A not in str(raised.value) and SECRET_B not in str(raised.value)


@pytest.mark.timeout(5)
def test_tokens_file_errors_name_the_line(tmp_path) -> None:
    path = tmp_path / "tokens"
    path.write_text(f"alice submit {SECRET_A}\nbob submit\n")
    with pytest.raises(ConfigError, match="line 2"):
        load_tokens("", str(path))
    with pytest.raises(ConfigError, match="cannot be read"):
        load_tokens("", str(tmp_path / "missing"))


@pytest.mark.timeout(5)
def test_config_reads_tokens_and_metrics_public_and_hides_secrets() -> None:
    config = Config.from_env({"GREENPOOL_TOKENS": f"alice:admin:{SECRET_A}", "GREENPOOL_METRICS_PUBLIC": "false"})
    assert config.metrics_public is False and [t.name for t in config.token_table()] == ["alice"]
    assert SECRET_A not in repr(config)
    assert Config.from_env({}).metrics_public is True and Config.from_env({}).token_table() == ()
    with pytest.raises(ConfigError, match="GREENPOOL_METRICS_PUBLIC"):
        Config.from_env({"GREENPOOL_METRICS_PUBLIC": "maybe"})
    with pytest.raises(ConfigError, match="GREENPOOL_TOKENS"):
        Config.from_env({"GREENPOOL_TOKENS": "alice:admin:short"})
    assert Config.from_env(config.to_env()).token_table() == config.token_table()  # how serve hands it on


@pytest.mark.timeout(5)
def test_every_token_is_compared_with_compare_digest(monkeypatch: pytest.MonkeyPatch) -> None:
    middleware = AuthMiddleware(load_tokens(f"a:submit:{SECRET_A},b:submit:{SECRET_B},c:admin:{SECRET_C}"))
    calls: list[tuple[bytes, bytes]] = []
    real = auth.hmac.compare_digest

    def counting(x: bytes, y: bytes) -> bool:
        calls.append((x, y))
        return real(x, y)

    monkeypatch.setattr(auth.hmac, "compare_digest", counting)
    for header, expected in [(f"Bearer {SECRET_A}", "a"), (f"Bearer {SECRET_C}", "c"), ("Bearer x" * 3, None)]:
        calls.clear()
        if expected is None:
            with pytest.raises(Unauthorized):
                middleware.authenticate(header)
        else:
            assert middleware.authenticate(header).name == expected
        assert len(calls) == 3, "every configured token is compared, whichever matches (no early exit)"
        assert all(len(x) == len(y) == 32 for x, y in calls), "digests of equal length: no length leak"


@pytest.mark.timeout(5)
def test_no_tokens_means_anonymous_admin() -> None:
    assert AuthMiddleware(()).authenticate(None) == auth.ANONYMOUS
    assert auth.ANONYMOUS.role == ADMIN and auth.ANONYMOUS.sees("anyone")


@pytest.mark.timeout(5)
def test_policy_requirements() -> None:
    public, private = AuthMiddleware((), metrics_public=True), AuthMiddleware((), metrics_public=False)
    resource = SimpleNamespace(on_get=None, on_patch=None)
    assert public.requirement("/metrics", "GET", resource) is None
    assert private.requirement("/metrics", "GET", resource) == SUBMIT
    assert public.requirement("/v1/pool", "PATCH", resource) == ADMIN
    assert public.requirement("/v1/pool", "GET", resource) == SUBMIT
    assert public.requirement("/v1/pool", "HEAD", resource) == SUBMIT  # HEAD needs what GET needs
    assert public.requirement("/healthz", "HEAD", resource) is None
    assert public.requirement("/v1/pool", "PUT", resource) is None  # no responder: falcon's 405
    assert public.requirement("/v1/pool", "OPTIONS", resource) is None
    assert public.requirement("/v1/unlisted", "GET", resource) == ADMIN  # fail closed
    assert public.requirement("/v1/pool", "DELETE", SimpleNamespace(on_delete=None)) == ADMIN  # unlisted responder


@pytest.mark.timeout(5)
def test_forbidden_for_a_weaker_role() -> None:
    middleware = AuthMiddleware(load_tokens(f"a:submit:{SECRET_A}"))
    req = SimpleNamespace(uri_template="/v1/pool", method="PATCH", context=SimpleNamespace(),
                          get_header=lambda name: f"Bearer {SECRET_A}")  # fmt: skip
    with pytest.raises(Forbidden):
        middleware.process_resource(req, None, SimpleNamespace(on_patch=None), {})
    req.method = "GET"
    middleware.process_resource(req, None, SimpleNamespace(on_get=None), {})
    assert req.context.principal == Principal("a", SUBMIT)


_ROUTES = """
import json, falcon.inspect
from service.app import create_app
from service.config import Config
app = create_app(Config(pool_size=1, log_level="warning", store="memory"))
routes = falcon.inspect.inspect_app(app).routes
print(json.dumps({r.path: [m.method for m in r.methods if not m.internal] for r in routes}))
"""


@pytest.mark.timeout(30)
def test_the_policy_names_every_served_route_and_method() -> None:
    out = subprocess.run([sys.executable, "-c", _ROUTES], cwd=REPO, capture_output=True, text=True, timeout=30)
    assert out.returncode == 0, out.stderr
    routes = json.loads(out.stdout.splitlines()[-1])
    served = {path: set(methods) - {"OPTIONS", "HEAD"} for path, methods in routes.items()}
    assert {path: set(methods) for path, methods in POLICY.items()} == served
    assert all(("HEAD" in methods) == ("GET" in methods) for methods in routes.values()), "HEAD needs what GET needs"


class _Engine:
    """Just enough engine for IdempotencyStore: fresh ids, and records that exist or not."""

    def __init__(self) -> None:
        self.jobs: dict[str, object] = {}
        self.ids = 0

    def new_id(self) -> str:
        self.ids += 1
        return f"j{self.ids}"

    def create(self, job_id: str | None) -> object:
        self.jobs[job_id or "anonymous"] = job = f"job {job_id}"
        return job

    def get(self, job_id: str) -> object:
        if job_id not in self.jobs:
            raise JobNotFound(job_id)
        return self.jobs[job_id]

    def get_pile(self, pile_id: str) -> object:
        raise PileNotFound(pile_id)


@pytest.mark.timeout(5)
def test_idempotency_store_is_bounded_and_forgets_expired_keys() -> None:
    engine = _Engine()
    store = IdempotencyStore(engine, MemoryIdempotencyKeys(3))  # type: ignore[arg-type]
    created = {}
    for i in range(10):
        created[i], replayed = store.create("alice", f"k{i}", "job", {"n": i}, engine.create)
        assert not replayed and len(store) <= 3
    assert store.create("alice", "k9", "job", {"n": 9}, engine.create) == (created[9], True)
    assert store.create("alice", "k0", "job", {"n": 0}, engine.create)[1] is False  # evicted: oldest first
    assert store.create("bob", "k9", "job", {"n": 9}, engine.create)[1] is False  # another principal's key
    del engine.jobs[created[9].split()[1]]  # its record expired: so has its key
    assert store.create("alice", "k9", "job", {"n": 9}, engine.create)[1] is False and len(store) == 3
    assert store.create("alice", None, "job", {}, engine.create) == ("job None", False)
