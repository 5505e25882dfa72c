"""A deliberately WRONG consumer, for the crash test's negative control. Never use it for anything else.

It is `jwtriage consume` with one change: `Store.write` first stores the batch's source
positions in a transaction of their own, and only then writes the rows (in the original
transaction). A crash between the two (JWTRIAGE_CRASH_AT=after_rows:N) leaves positions
that claim a batch whose rows were rolled back: on restart the consumer resumes after it
and those events are lost. The crash test must detect that loss, or it could not detect
the real thing.

    python tests/reliability/unsafe_consumer.py [jwtriage args...]
"""

from __future__ import annotations

import sys
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent.parent))

from pipeline import cli
from pipeline.engine.keys import KeyTimeline
from pipeline.io.store import Store
from pipeline.records import Batch

_safe_write = Store.write


def _positions_first_write(self: Store, batch: Batch, timeline: KeyTimeline) -> None:
    if batch.positions:
        self.con.begin()
        self.save_positions(batch.positions, datetime.now(UTC))
        self.con.commit()  # the bug: the positions are durable before the rows are
    _safe_write(self, batch, timeline)


Store.write = _positions_first_write  # type: ignore[method-assign]

if __name__ == "__main__":
    sys.exit(cli.main(sys.argv[1:]))
