"""scripts/install-system-deps.sh (run by `make test`) against a stand-in apt-get and id on a PATH of its own:
silent when every tool is there, one update and one install of the missing packages as root, a warning naming
the packages (and exit 0) when it cannot install them."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
from ops_support import REPO
from tools import PACKAGES

SCRIPT = REPO / "scripts" / "install-system-deps.sh"
FAKE_APT = """#!/bin/sh
echo "$*" >> "$APT_LOG"
case " $* " in *" $APT_REFUSE "*) exit 100;; esac
"""


def run_script(tmp_path: Path, missing: set[str], uid: int = 0, refuse: str = "-") -> tuple[str, list[str]]:
    """Run the script with every listed command present but `missing`; its stderr and the apt-get calls."""
    bindir = tmp_path / "bin"
    bindir.mkdir()
    for tool in ("dirname", "grep", "sort", "tr"):
        (bindir / tool).symlink_to(shutil.which(tool))
    for name, text in {"id": f"#!/bin/sh\necho {uid}\n", "apt-get": FAKE_APT}.items():
        (bindir / name).write_text(text)
    for command in set(PACKAGES) - missing:
        (bindir / command).write_text("#!/bin/sh\n")
    for path in bindir.iterdir():
        path.chmod(0o755)
    log = tmp_path / "apt.log"
    log.touch()
    env = {"PATH": str(bindir), "APT_LOG": str(log), "APT_REFUSE": refuse}
    done = subprocess.run([str(SCRIPT)], env=env, capture_output=True, text=True, timeout=30)
    assert done.returncode == 0, done.stderr
    return done.stderr, log.read_text().splitlines()


def test_nothing_missing_is_silent_and_calls_no_apt(tmp_path: Path) -> None:
    """Every command present: no output, no apt-get (so a repeated `make test` is not slowed)."""
    assert run_script(tmp_path, missing=set()) == ("", [])


def test_root_updates_once_and_installs_the_missing_packages(tmp_path: Path) -> None:
    """Missing wrk and promtool: `apt-get update` once, then one install of their packages, each named once."""
    stderr, calls = run_script(tmp_path, missing={"wrk", "promtool"})
    assert calls == ["update -qq", "install -y -qq prometheus wrk"], calls
    assert "prometheus wrk" in stderr and "warning" not in stderr


@pytest.mark.parametrize("uid", [0, 1000])
def test_a_failed_install_only_warns_naming_the_packages(tmp_path: Path, uid: int) -> None:
    """apt-get refusing wrk (root: the rest is installed one by one) or no root at all: a warning naming
    what is not installed, exit 0."""
    stderr, calls = run_script(tmp_path, missing={"wrk", "chromedriver"}, uid=uid, refuse="wrk")
    if uid == 0:
        assert calls == ["update -qq", "install -y -qq chromium-driver wrk", "install -y -qq chromium-driver",
                         "install -y -qq wrk"], calls  # fmt: skip
        assert "warning: apt-get could not install wrk;" in stderr, stderr
    else:
        assert calls == []
        assert "warning: not installing chromium-driver wrk (needs root and apt-get" in stderr, stderr
