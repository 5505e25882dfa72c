"""A deliberately WRONG consumer, for the crash test's negative control. Never use it for anything else.

It is `jwtriage consume` with one change: `Store.commit` first stores the batch's source
positions in a transaction of their own, and only then writes the rows (in the original
transaction). A crash between the two (JWTRIAGE_CRASH_AT=after_rows:N) leaves positions
that claim a batch whose rows were rolled back: on restart the consumer resumes after it
and those events are lost. The crash test must detect that loss, or it could not detect
the real thing.

    python tests/reliability/unsafe_consumer.py [jwtriage args...]
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent.parent))

from pipeline import cli
from pipeline.store import PreparedWrite, Store

_safe_commit = Store.commit


def _positions_first_commit(self: Store, prepared: PreparedWrite) -> None:
    if prepared.positions is not None:
        self.con.begin()
        self._insert(prepared.positions, "source_positions")
        self.con.commit()  # the bug: the positions are durable before the rows are
    _safe_commit(self, prepared)


Store.commit = _positions_first_commit  # type: ignore[method-assign]

if __name__ == "__main__":
    sys.exit(cli.main(sys.argv[1:]))
