"""The image, checked without a Docker engine: the Dockerfile's instructions are checked, then its COPY and
RUN steps are replayed into a fresh virtualenv (a stand-in for the image) and its ENTRYPOINT + CMD run
there — on loopback ports only — with the environment, bind mounts and secret that docker-compose.yml
would give the container: /healthz answers, the HEALTHCHECK follows the configured port, tokens turn
authentication on, a mounted plugin directory is importable, and SIGTERM stops it cleanly."""

from __future__ import annotations

import dataclasses
import importlib.util
import os
import shutil
import signal
import stat
import subprocess
import tempfile
import venv
from collections.abc import Mapping, Sequence
from pathlib import Path

import pytest
from deploy_support import (
    compose,
    container_environment,
    container_mounts,
    copy_args,
    dockerfile,
    dockerignored,
    env_of,
    exec_form,
    healthcheck,
    only,
)
from ops_support import REPO, OpsServer, free_port, log_records

DOCKER_STOP_DEFAULT_S = 10  # `docker stop` sends SIGKILL this long after STOPSIGNAL unless told otherwise
SECRET = "compose-test-secret-0123456789"  # a token's secret: ≥ 16 characters
FILE_SECRET = "compose-file-secret-0123456789"
INSECURE_PROBE = "import os; print(os.environ.get('GREENPOOL_INSECURE'))"


def test_dockerfile_instructions() -> None:
    """Slim 3.11 base; dependencies from pyproject.toml in a layer before the source; every COPY source in the
    build context; a non-root user; EXPOSE 8000; STOPSIGNAL SIGTERM with a drain shorter than docker's stop
    timeout; the store under GREENPOOL_DATA_DIR=/data, a volume the user owns; ENTRYPOINT, CMD and HEALTHCHECK in
    exec form; no GREENPOOL_INSECURE baked into the image."""
    instructions = dockerfile()
    assert instructions[0] == ("FROM", "python:3.11-slim")
    keywords = [kw for kw, _ in instructions]

    copies = [copy_args(rest) for rest in only(instructions, "COPY")]
    assert copies[0][1:] == (["pyproject.toml"], "./"), "the first COPY must be pyproject.toml alone"
    first_copy = keywords.index("COPY")
    source_copy = next(i for i, (kw, rest) in enumerate(instructions) if kw == "COPY" and "service" in rest)
    deps_runs = [rest for kw, rest in instructions[first_copy:source_copy] if kw == "RUN"]
    assert any("pip install" in run and "pyproject.toml" in run for run in deps_runs), deps_runs
    for _flags, sources, _dest in copies:
        for source in sources:
            assert (REPO / source).exists(), source
            assert not dockerignored(source), f"{source} is copied but excluded by .dockerignore"
    for private in ("tests", "benchmarks", ".git", ".venv", "deploy/prometheus.yml"):
        assert dockerignored(private), f"{private} should stay out of the build context"

    users = only(instructions, "USER")
    assert users and users[-1] not in ("root", "0") and not users[-1].startswith("0:"), users
    assert any("useradd" in run and users[-1] in run for run in only(instructions, "RUN"))
    assert keywords.index("USER") > source_copy, "switch user after installing, before running"

    assert only(instructions, "EXPOSE") == ["8000"]
    assert only(instructions, "STOPSIGNAL") == ["SIGTERM"]
    env = env_of(instructions)
    assert env["GREENPOOL_BIND"] == "0.0.0.0:8000"
    assert float(env["GREENPOOL_GRACEFUL_TIMEOUT"]) < DOCKER_STOP_DEFAULT_S, env
    assert "GREENPOOL_INSECURE" not in env, "the entrypoint decides, from whether tokens are configured"
    assert env["PYTHONPATH"] == "/plugins", "compose mounts plugin modules at /plugins"
    assert env["GREENPOOL_DATA_DIR"] == "/data" and only(instructions, "VOLUME") == ["/data"], "the store's volume"
    assert any("useradd" in run and "-o greenpool" in run and "/data" in run for run in only(instructions, "RUN")), (
        "/data is owned by the user that writes the store"
    )
    assert exec_form(instructions, "ENTRYPOINT") == ["greenpool-entrypoint"]
    assert exec_form(instructions, "CMD") == ["greenpool", "serve"], "no --bind: it would override GREENPOOL_BIND"
    options, command = healthcheck(instructions)
    assert command == ["greenpool-healthcheck"]
    assert {"interval", "timeout", "start-period", "retries"} <= set(options), options


# -- replaying the image -------------------------------------------------------------------------------------
@dataclasses.dataclass
class Image:
    """The Dockerfile replayed under `root` (the image's filesystem), with a venv for its Python."""

    root: Path
    workdir: Path
    env: dict[str, str]  # the image's ENV plus what a shell needs here (PATH into the image, pip settings)
    skipped: list[str]
    instructions: list[tuple[str, str]]

    def path(self, container_path: str) -> Path:
        """Where a path of the container is in the replayed image."""
        return self.root / container_path.lstrip("/")

    def mount(self, mounts: Mapping[str, Path]) -> None:
        """Bind mounts and secrets: each host path linked at its path in the container."""
        for target, source in mounts.items():
            link = self.path(target)
            link.parent.mkdir(parents=True, exist_ok=True)
            if link.is_symlink():
                link.unlink()
            elif link.is_dir():
                shutil.rmtree(link)
            link.symlink_to(source)

    def fresh_volumes(self) -> None:
        """Each named volume of compose's greenpool service new and empty, as a new project's: a fresh
        directory linked at its path in the container (the store on /data starts from nothing)."""
        for volume in compose()["services"]["greenpool"].get("volumes", []):
            source, target = volume.split(":")[:2]
            if not source.startswith((".", "/", "$")):
                self.mount({target: Path(tempfile.mkdtemp(prefix=f"{source}-", dir=self.root.parent))})

    def environment(self, container_env: Mapping[str, str]) -> dict[str, str]:
        """The process environment of a container given `container_env` on top of the image's ENV, its
        absolute paths (GREENPOOL_TOKENS_FILE, PYTHONPATH entries) moved into the replayed image."""
        env = {**self.env, **container_env}
        for key, value in env.items():
            if key == "PYTHONPATH":
                env[key] = os.pathsep.join(str(self.path(p)) if p.startswith("/") else p for p in value.split(":"))
            elif key.startswith("GREENPOOL_") and value.startswith("/"):
                env[key] = str(self.path(value))
        return env

    def argv(self, words: Sequence[str]) -> list[str]:
        """An exec-form command with its program looked up on the image's PATH, as docker does."""
        program = shutil.which(words[0], path=self.env["PATH"])
        assert program, f"{words[0]} is not on the image's PATH"
        return [program, *words[1:]]

    def run(
        self, words: Sequence[str], env: Mapping[str, str], cwd: Path | None = None
    ) -> subprocess.CompletedProcess[str]:
        """Run an exec-form command in the image (bounded), in WORKDIR unless told otherwise."""
        return subprocess.run(self.argv(words), cwd=cwd or self.workdir, env=dict(env), capture_output=True,
                              text=True, timeout=60)  # fmt: skip

    def entrypoint(self, *cmd: str) -> list[str]:
        """ENTRYPOINT + `cmd` (the image's CMD when none is given)."""
        return self.argv(exec_form(self.instructions, "ENTRYPOINT") + list(cmd or exec_form(self.instructions, "CMD")))


@pytest.fixture(scope="module")
def image(tmp_path_factory: pytest.TempPathFactory) -> Image:
    """COPY and RUN steps replayed in order (a fresh venv stands in for the image's Python, whose bin/ is
    /usr/local/bin; `useradd` is the only step skipped: it needs root and changes this machine)."""
    tmp = tmp_path_factory.mktemp("image")
    instructions = dockerfile()
    python_root, root = tmp / "image-python", tmp / "image-root"
    venv.EnvBuilder(with_pip=True).create(python_root)
    image = Image(root, root, {}, [], instructions)
    image.env = {
        "PATH": os.pathsep.join([str(python_root / "bin"), str(image.path("/usr/local/bin")), "/usr/bin", "/bin"]),
        "HOME": str(tmp),
        "VIRTUAL_ENV": str(python_root),
        # this machine's pip settings (index mirrors, certificates, timeouts), as a build host's would be
        **{k: v for k, v in os.environ.items() if k.startswith("PIP_")},
    }
    for keyword, rest in instructions:
        if keyword == "WORKDIR":
            image.workdir = image.path(rest)
            image.workdir.mkdir(parents=True, exist_ok=True)
        elif keyword == "ENV":
            image.env.update(env_of([(keyword, rest)]))
        elif keyword == "COPY":
            flags, sources, dest = copy_args(rest)
            base = image.path(dest) if dest.startswith("/") else image.workdir / dest
            for source in sources:
                target = base / Path(source).name if dest.endswith("/") else base
                target.parent.mkdir(parents=True, exist_ok=True)
                if (REPO / source).is_dir():
                    shutil.copytree(REPO / source, target, ignore=shutil.ignore_patterns("__pycache__"))
                else:
                    shutil.copy2(REPO / source, target)
                if "chmod" in flags:
                    target.chmod(int(flags["chmod"], 8))
        elif keyword == "RUN":
            if rest.startswith(("useradd", "groupadd", "adduser")):
                image.skipped.append(rest)
                continue
            done = subprocess.run(["/bin/sh", "-c", rest], cwd=image.workdir, env=image.env, capture_output=True,
                                  text=True, timeout=500)  # fmt: skip
            assert done.returncode == 0, f"RUN {rest}\n--- stdout ---\n{done.stdout[-4000:]}\n{done.stderr[-4000:]}"
    return image


def compose_container(image: Image, shell: Mapping[str, str]) -> dict[str, str]:
    """The greenpool service's container as compose would start it from `shell`'s variables: its mounts
    linked into the image, and the process environment it would have."""
    doc = compose()
    service = doc["services"]["greenpool"]
    image.mount(container_mounts(doc, service, shell))
    image.fresh_volumes()
    return image.environment(container_environment(service, shell))


@pytest.mark.timeout(600)
def test_image_serves_healthz_follows_the_port_and_drains_on_sigterm(image: Image, tmp_path: Path) -> None:
    """The image's Python has the dependencies and greenpool itself, not this checkout; ENTRYPOINT + CMD with
    the image's ENV (the bind moved to a loopback port) serve /healthz; the HEALTHCHECK passes on that port and
    fails, naming the address, when GREENPOOL_BIND names a port nobody serves; SIGTERM exits 0."""
    assert len(image.skipped) == 1, image.skipped
    for program in ("greenpool-entrypoint", "greenpool-healthcheck"):
        assert os.stat(image.argv([program])[0]).st_mode & stat.S_IXUSR, f"{program} is not executable"
    imports = "import service, prometheus_client, falcon, gunicorn; print(service.__file__)"
    probe = image.run(["python", "-c", imports], image.env, cwd=image.root)  # not WORKDIR, which has the source
    assert probe.returncode == 0, probe.stderr
    assert image.env["VIRTUAL_ENV"] in probe.stdout and str(REPO) not in probe.stdout, probe.stdout

    port = free_port()
    image.fresh_volumes()
    env = image.environment({"GREENPOOL_BIND": f"127.0.0.1:{port}"})
    server = OpsServer.start(tmp_path, env=env, command=image.entrypoint(), port=port, cwd=image.workdir)
    try:
        assert server.pool()["size"] > 0
        _options, check = healthcheck(image.instructions)
        healthy = image.run(check, env)
        assert healthy.returncode == 0, healthy.stderr
        elsewhere = {**env, "GREENPOOL_BIND": f"0.0.0.0:{free_port()}"}
        unhealthy = image.run(check, elsewhere)
        assert unhealthy.returncode == 1 and elsewhere["GREENPOOL_BIND"] in unhealthy.stderr, unhealthy
    finally:
        server.proc.send_signal(signal.SIGTERM)
        try:
            code = server.proc.wait(float(env["GREENPOOL_GRACEFUL_TIMEOUT"]) + 5)
        finally:
            server.stop(timeout=1)
    assert code == 0, server.stderr()
    assert (image.path("/data") / "greenpool.db").is_file(), "the default store is on the image's /data volume"


@pytest.mark.timeout(120)
def test_compose_settings_reach_the_image(image: Image, tmp_path: Path) -> None:
    """Started as compose would start it with settings in the shell — GREENPOOL_BIND (to a loopback port),
    a pool size, tokens in GREENPOOL_TOKENS and in a GREENPOOL_TOKENS_FILE (mounted as a secret), private
    metrics, and a plugin module in GREENPOOL_PLUGINS_DIR — the server requires a token (either one), has
    the size, hides /metrics, registers the plugin's task, and logs no insecure warning."""
    plugins = tmp_path / "plugins"
    plugins.mkdir()
    (plugins / "compose_plugin.py").write_text(
        "from service.tasks import task\n\n\n@task(name='compose_hello')\ndef hello() -> str:\n    return 'hi'\n"
    )
    tokens_file = tmp_path / "tokens.txt"
    tokens_file.write_text(f"# from the host\nops admin {FILE_SECRET}\n")
    port = free_port()
    shell = {
        "GREENPOOL_BIND": f"127.0.0.1:{port}",
        "GREENPOOL_POOL_SIZE": "7",
        "GREENPOOL_TOKENS": f"alice:submit:{SECRET}",
        "GREENPOOL_TOKENS_FILE": str(tokens_file),
        "GREENPOOL_METRICS_PUBLIC": "false",
        "GREENPOOL_PLUGINS": "compose_plugin",
        "GREENPOOL_PLUGINS_DIR": str(plugins),
    }
    env = compose_container(image, shell)
    server = OpsServer.start(tmp_path, env=env, command=image.entrypoint(), port=port, cwd=image.workdir)
    try:
        assert server.get("/v1/pool").status_code == 401
        assert server.get("/metrics").status_code == 401
        for name, secret in (("alice", SECRET), ("ops", FILE_SECRET)):
            auth = {"Authorization": f"Bearer {secret}"}
            assert server.get("/v1/whoami", headers=auth).json()["name"] == name
        auth = {"Authorization": f"Bearer {FILE_SECRET}"}
        assert server.get("/v1/pool", headers=auth).json()["size"] == 7
        assert server.get("/metrics", headers=auth).status_code == 200
        tasks = {t["name"] for t in server.get("/v1/tasks", headers=auth).json()["tasks"]}
        assert "compose_hello" in tasks, tasks
    finally:
        assert server.stop() == 0
    records = log_records(server.stderr())
    assert not [r for r in records if "insecure" in str(r.get("msg", ""))], server.stderr()


@pytest.mark.parametrize(
    ("shell", "expected"),
    [
        ({}, "1"),
        ({"GREENPOOL_TOKENS": f"alice:submit:{SECRET}"}, None),
        ({"GREENPOOL_TOKENS_FILE": "tokens"}, None),
        ({"GREENPOOL_TOKENS_FILE": "comments-only"}, "1"),
        ({"GREENPOOL_INSECURE": "0"}, "0"),
        ({"GREENPOOL_TOKENS": "not-a-token"}, None),  # a refused configuration is not made insecure
    ],
    ids=["no-tokens", "tokens", "tokens-file", "tokens-file-without-tokens", "explicit-off", "invalid-tokens"],
)
def test_entrypoint_turns_insecure_on_only_without_tokens(
    image: Image, tmp_path: Path, shell: dict[str, str], expected: str | None
) -> None:
    """GREENPOOL_INSECURE as the entrypoint hands it to the command, for the container compose starts from
    `shell`: 1 only when no token is configured, never overriding an explicit value."""
    (tmp_path / "tokens").write_text(f"ops admin {FILE_SECRET}\n")
    (tmp_path / "comments-only").write_text("# nobody yet\n\n")
    shell = {k: str(tmp_path / v) if k == "GREENPOOL_TOKENS_FILE" else v for k, v in shell.items()}
    done = image.run(image.entrypoint("python", "-c", INSECURE_PROBE), compose_container(image, shell))
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == str(expected)


@pytest.mark.timeout(60)
def test_without_tokens_the_image_may_bind_a_non_loopback_address(image: Image, tmp_path: Path) -> None:
    """With compose's defaults (no tokens) `serve` accepts a non-loopback bind, with its insecure warning; with
    GREENPOOL_INSECURE=0 it refuses (exit 2). The address is TEST-NET-1's 192.0.2.1, which is on no interface
    here: nothing is ever listening, so the accepted case ends when gunicorn cannot bind it."""
    shell = {"GREENPOOL_BIND": f"192.0.2.1:{free_port()}"}
    accepted = image.run(image.entrypoint(), compose_container(image, shell))
    assert accepted.returncode != 0 and "refusing" not in accepted.stderr, accepted.stderr
    warnings = [r for r in log_records(accepted.stderr) if r.get("level") == "warning"]
    assert any("insecure" in r["msg"] for r in warnings), accepted.stderr
    refused = image.run(image.entrypoint(), compose_container(image, {**shell, "GREENPOOL_INSECURE": "0"}))
    assert refused.returncode == 2 and "refusing to bind 192.0.2.1" in refused.stderr, refused.stderr


@pytest.mark.parametrize(
    ("bind", "address"),
    [
        ("0.0.0.0:8000", ("127.0.0.1", 8000)),
        ("[::]:9000", ("::1", 9000)),
        (":8001", ("127.0.0.1", 8001)),
        ("10.1.2.3:80", ("10.1.2.3", 80)),
        ("[fd00::1]:8080", ("fd00::1", 8080)),
        ("unix:/run/greenpool.sock", "/run/greenpool.sock"),
    ],
)
def test_healthcheck_reaches_the_bound_address(bind: str, address: tuple[str, int] | str) -> None:
    """The HEALTHCHECK's target follows GREENPOOL_BIND: a wildcard host through loopback, a unix socket as
    such (the connection is only built here, never opened)."""
    spec = importlib.util.spec_from_file_location("healthcheck", REPO / "deploy" / "image" / "healthcheck.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    conn = module.connection(bind)
    assert (conn.socket_path if isinstance(address, str) else (conn.host, conn.port)) == address
