"""deploy/nginx.conf for the tests: its directives read without nginx, and a local copy of it run by Debian's
nginx in front of replicas on loopback (serverkit), as the current user, with every path in a temp dir.

The local copy differs from the file only where a container differs from a test: `user` (the current user
when root, else none), `pid` and the logs (in the temp dir), the temp directories nginx creates (there too),
`listen` (a free loopback port) and the upstream's one `server replica:8000 resolve` line (one `server` line
per replica; Debian's nginx 1.22 has no `resolve`). Each rewrite must match exactly once, so a change to the
file that the copy would silently miss fails the test instead.
"""

from __future__ import annotations

import getpass
import os
import re
from collections.abc import Sequence
from pathlib import Path

import serverkit
from ops_support import REPO
from serverkit import free_port
from tools import require

NGINX_CONF = REPO / "deploy" / "nginx.conf"
TEMP_DIRS = ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")


def directives(text: str) -> list[tuple[tuple[str, ...], str, list[str]]]:
    """Every simple directive of an nginx config as (enclosing blocks, name, arguments), in file order.

    Blocks are named by their directive and arguments (`("http", "upstream greenpool")`); quotes are kept
    off the arguments. Enough for this project's file: no `include`, no `$` escapes in quoted strings."""
    tokens = re.findall(r'"[^"]*"|\'[^\']*\'|[{};]|[^\s{};"\']+', re.sub(r"#[^\n]*", "", text))
    found: list[tuple[tuple[str, ...], str, list[str]]] = []
    stack: list[str] = []
    words: list[str] = []
    for token in tokens:
        if token == "{":
            stack.append(" ".join(words))
            words = []
        elif token == "}":
            assert not words, f"unterminated directive {words} before `}}`"
            stack.pop()
        elif token == ";":
            found.append((tuple(stack), words[0], words[1:]))
            words = []
        else:
            words.append(token.strip("\"'"))
    assert not stack and not words, "unbalanced braces or a directive without `;`"
    return found


def directive(text: str, name: str, block: str | None = None) -> list[list[str]]:
    """The arguments of every `name` directive (inside a block whose name starts with `block`, if given)."""
    return [args for blocks, found, args in directives(text) if found == name
            and (block is None or any(b.split()[0] == block for b in blocks))]  # fmt: skip


def _rewrite(text: str, pattern: str, replacement: str) -> str:
    new, count = re.subn(pattern, lambda _: replacement, text, flags=re.MULTILINE)
    assert count == 1, f"deploy/nginx.conf: expected one line matching {pattern!r}, found {count}"
    return new


def local_config(directory: Path, port: int, upstreams: Sequence[str]) -> Path:
    """Write the local copy of deploy/nginx.conf into `directory` (see the module docstring); its path."""
    text = NGINX_CONF.read_text()
    user = f"user {getpass.getuser()};" if os.geteuid() == 0 else ""
    temp = "".join(f"    {kind}_temp_path {directory / kind};\n" for kind in TEMP_DIRS)
    servers = "".join(f"        server {address};\n" for address in upstreams)
    for pattern, replacement in (
        (r"^user \S+;$", user),
        (r"^pid \S+;$", f"pid {directory / 'nginx.pid'};"),
        (r"^error_log /var/log/nginx/error.log (\w+);$", f"error_log {directory / 'error.log'} info;"),
        (r"^(\s*)access_log /var/log/nginx/access.log;", f"    access_log {directory / 'access.log'};"),
        (r"^http \{\n", "http {\n" + temp),
        (r"^(\s*)listen 8000;", f"        listen 127.0.0.1:{port};"),
        (r"^\s*server replica:8000 resolve;[^\n]*\n", servers),
    ):
        text = _rewrite(text, pattern, replacement)
    path = directory / "nginx.conf"
    path.write_text(text)
    return path


def nginx_command(config: Path) -> list[str]:
    """Debian's nginx on `config`, in the foreground, its startup errors in the config's directory."""
    (nginx,) = require("nginx")
    directory = config.parent
    return [nginx, "-c", str(config), "-p", str(directory), "-e", str(directory / "error.log"),
            "-g", "daemon off;"]  # fmt: skip


def start_proxy(directory: Path, upstreams: Sequence[str]) -> serverkit.Server:
    """nginx on a free loopback port in front of `upstreams` (host:port), once `/healthz` answers 200 through it."""
    directory.mkdir(parents=True, exist_ok=True)
    port = free_port()
    config = local_config(directory, port, upstreams)
    return serverkit.start_server(directory, {"PATH": os.environ.get("PATH", "/usr/bin:/bin")},
                                  command=nginx_command(config), port=port)  # fmt: skip


def proxy_log(directory: Path) -> str:
    """nginx's error log of a proxy started in `directory` (for failure messages)."""
    path = directory / "error.log"
    return path.read_text(errors="replace") if path.exists() else ""
