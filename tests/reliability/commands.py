"""Running `jwtriage` commands in this process (fast: no interpreter start-up), output captured."""

from __future__ import annotations

import contextlib
import io
import sys

from pipeline import cli


def in_process(argv: list[str], stdin: bytes = b"") -> str:
    """`jwtriage ARGV` with `stdin`; returns stdout and stderr together, whatever the exit status."""
    out, err = io.StringIO(), io.StringIO()
    old = sys.stdin
    sys.stdin = io.TextIOWrapper(io.BytesIO(stdin))
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err), contextlib.suppress(SystemExit):
            cli.main(argv)
    finally:
        sys.stdin = old
    return out.getvalue() + err.getvalue()
