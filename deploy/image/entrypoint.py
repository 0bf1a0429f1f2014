#!/usr/bin/env python3
"""The image's entrypoint: turn on GREENPOOL_INSECURE only when no bearer tokens are configured, then exec.

A container must bind a non-loopback address, which `greenpool serve` allows without tokens only with
GREENPOOL_INSECURE=1. Compose cannot branch on whether tokens were given, so the decision is made here, with
greenpool's own parser: tokens from GREENPOOL_TOKENS or GREENPOOL_TOKENS_FILE keep authentication on and the
flag off; an explicit GREENPOOL_INSECURE is left as it is; a configuration greenpool refuses gets no flag
(`serve` then names the problem and exits 2).
"""

from __future__ import annotations

import os
import sys

from service.config import Config, ConfigError


def insecure_default(environ: dict[str, str]) -> str | None:
    """`"1"` when GREENPOOL_INSECURE is unset or empty and the configuration has no tokens, else None."""
    if environ.get("GREENPOOL_INSECURE", "") != "":
        return None
    try:
        tokens = Config.from_env(environ).token_table()
    except ConfigError:
        return None
    return None if tokens else "1"


def main(argv: list[str]) -> int:
    """Set the default, then replace this process with `argv` (the image's CMD or `docker run` arguments)."""
    if not argv:
        print("greenpool-entrypoint: no command to run (the image's CMD is `greenpool serve`)", file=sys.stderr)
        return 2
    flag = insecure_default(dict(os.environ))
    if flag is not None:
        os.environ["GREENPOOL_INSECURE"] = flag
    os.execvp(argv[0], argv)
    return 127  # not reached: execvp raises OSError when it fails


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
