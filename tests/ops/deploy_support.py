"""Reading the deployment files without a Docker engine: the Dockerfile's instructions, .dockerignore's rules,
compose's interpolation and what it hands the greenpool container (environment, bind mounts, secrets), and
the README's configuration table. The tests compare these with each other and replay them."""

from __future__ import annotations

import fnmatch
import json
import re
import shlex
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml
from ops_support import REPO

#: Variables compose itself reads (never passed into the container); the README's deployment section names each.
COMPOSE_ONLY = ("GREENPOOL_PORT", "GREENPOOL_PLUGINS_DIR")
SECRETS_DIR = "/run/secrets"


# -- the Dockerfile ------------------------------------------------------------------------------------------
def dockerfile() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs: comments dropped, backslash continuations joined."""
    instructions: list[tuple[str, str]] = []
    pending = ""
    for raw in (REPO / "Dockerfile").read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        line, pending = pending + line, ""
        keyword, _, rest = line.partition(" ")
        instructions.append((keyword.upper(), rest.strip()))
    assert not pending, "the Dockerfile ends inside a continuation"
    return instructions


def only(instructions: list[tuple[str, str]], keyword: str) -> list[str]:
    """The arguments of every `keyword` instruction."""
    return [rest for kw, rest in instructions if kw == keyword]


def env_of(instructions: list[tuple[str, str]]) -> dict[str, str]:
    """Every ENV instruction's KEY=VALUE pairs."""
    env: dict[str, str] = {}
    for rest in only(instructions, "ENV"):
        for pair in shlex.split(rest):
            key, _, value = pair.partition("=")
            env[key] = value
    return env


def copy_args(rest: str) -> tuple[dict[str, str], list[str], str]:
    """A COPY's `--flag=value` options, its sources and its destination."""
    words = rest.split()
    flags = dict(w[2:].partition("=")[::2] for w in words if w.startswith("--"))
    *sources, dest = [w for w in words if not w.startswith("--")]
    return flags, sources, dest


def exec_form(instructions: list[tuple[str, str]], keyword: str) -> list[str]:
    """The JSON (exec-form) argument list of the one `keyword` instruction (CMD, ENTRYPOINT)."""
    (rest,) = only(instructions, keyword)
    words = json.loads(rest)
    assert isinstance(words, list) and all(isinstance(w, str) for w in words), f"{keyword} must be in exec form"
    return words


def healthcheck(instructions: list[tuple[str, str]]) -> tuple[dict[str, str], list[str]]:
    """The HEALTHCHECK's options and its exec-form command."""
    (rest,) = only(instructions, "HEALTHCHECK")
    options, _, command = rest.partition("CMD ")
    flags = dict(w[2:].partition("=")[::2] for w in options.split())
    return flags, json.loads(command)


def dockerignored(path: str) -> bool:
    """Whether .dockerignore leaves `path` (relative to the repo) out of the build context: the last
    matching rule wins, `!` re-includes, and a rule that matches a directory matches everything in it."""
    ignored = False
    for line in (REPO / ".dockerignore").read_text().splitlines():
        rule = line.strip()
        if not rule or rule.startswith("#"):
            continue
        negated, pattern = rule.startswith("!"), rule.lstrip("!").strip("/")
        parts = path.split("/")
        prefixes = ["/".join(parts[:n]) for n in range(1, len(parts) + 1)]
        if any(fnmatch.fnmatchcase(p, pattern) or fnmatch.fnmatchcase(p, "**/" + pattern) for p in prefixes):
            ignored = not negated
    return ignored


# -- docker-compose.yml --------------------------------------------------------------------------------------
def compose() -> dict[str, Any]:
    """docker-compose.yml, parsed, not interpolated."""
    return yaml.safe_load((REPO / "docker-compose.yml").read_text())


_NAME = r"[A-Za-z_][A-Za-z0-9_]*"


def interpolate(text: str, environ: Mapping[str, str]) -> str:
    """Compose's interpolation: `$$`, `$VAR`, `${VAR}`, `${VAR:-default}` and `${VAR-default}`, nested."""
    out, i = [], 0
    while i < len(text):
        if text.startswith("$$", i):
            out.append("$")
            i += 2
        elif text.startswith("${", i):
            depth, j = 1, i + 2
            while depth:
                assert j < len(text), f"unclosed ${{ in {text!r}"
                if text.startswith("${", j):
                    depth, j = depth + 1, j + 2
                else:
                    depth, j = depth - (text[j] == "}"), j + 1
            out.append(_substitute(text[i + 2 : j - 1], environ))
            i = j
        elif (match := re.compile(r"\$(" + _NAME + ")").match(text, i)) is not None:
            out.append(environ.get(match.group(1), ""))
            i = match.end()
        else:
            out.append(text[i])
            i += 1
    return "".join(out)


def _substitute(body: str, environ: Mapping[str, str]) -> str:
    match = re.fullmatch(r"(" + _NAME + r")(?:(:?-)(.*))?", body, re.DOTALL)
    assert match, f"unsupported interpolation ${{{body}}} (only ${{VAR}}, ${{VAR:-x}} and ${{VAR-x}} are emulated)"
    name, operator, default = match.groups()
    value = environ.get(name)
    if operator == ":-" and not value or operator == "-" and value is None:
        return interpolate(default, environ)
    return value or ""


def variables_used(node: Any) -> set[str]:
    """Every variable name that interpolation of `node` (a parsed compose file or part of it) reads."""
    if isinstance(node, dict):
        return set().union(*(variables_used(v) for v in node.values()))
    if isinstance(node, list):
        return set().union(*(variables_used(v) for v in node))
    if isinstance(node, str):
        return set(re.findall(r"(?<!\$)\$\{?(" + _NAME + ")", node.replace("$$", "")))
    return set()


def container_environment(service: Mapping[str, Any], environ: Mapping[str, str]) -> dict[str, str]:
    """What compose puts in the container's environment: `KEY: value` interpolated, a bare `KEY` taken from
    the shell (or .env) when set there and left out when not."""
    result: dict[str, str] = {}
    for key, value in service.get("environment", {}).items():
        if value is None:
            if key in environ:
                result[key] = environ[key]
        else:
            result[key] = interpolate(str(value), environ)
    return result


def container_mounts(doc: Mapping[str, Any], service: Mapping[str, Any], environ: Mapping[str, str]) -> dict[str, Path]:
    """Path in the container → file or directory on the host, for the service's bind mounts and secrets."""
    mounts: dict[str, Path] = {}
    for volume in service.get("volumes", []):
        source, target, *_ = interpolate(volume, environ).split(":")
        if source.startswith((".", "/")):  # a bind mount, not a named volume
            mounts[target] = (REPO / source).resolve()
    for secret in service.get("secrets", []):
        name = secret if isinstance(secret, str) else secret["source"]
        target = name if isinstance(secret, str) else secret.get("target", name)
        file = interpolate(doc["secrets"][name]["file"], environ)
        mounts[target if target.startswith("/") else f"{SECRETS_DIR}/{target}"] = (REPO / file).resolve()
    return mounts


# -- the README ----------------------------------------------------------------------------------------------
def readme() -> str:
    """README.md's text."""
    return (REPO / "README.md").read_text()


def configuration_table() -> list[str]:
    """The variables of the README's configuration table, in its order."""
    section = readme().split("## Configuration", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"^\| `(GREENPOOL_[A-Z_]+)` \|", section, re.MULTILINE)


def deployment_section() -> str:
    """The README's "Deployment" section."""
    return readme().split("## Deployment", 1)[1].split("\n## ", 1)[0]
