"""Instructions per event of the consumer's store writes, counted by valgrind: a figure the load cannot move.

    valgrind --tool=callgrind --callgrind-out-file=/dev/null python bench/write_instructions.py STREAM process [TREE]
    valgrind --tool=callgrind --callgrind-out-file=/dev/null python bench/write_instructions.py STREAM write [TREE]

STREAM is a folder with events.jsonl, jwks.jsonl and jwtriage.toml (a slice of the outage stream's
events, say). Both modes run the events through a consumer's `Pipeline` (events held for late
snapshots, as `consume` does) in batches of `BATCH` (what one poll brought on the outage backlog);
`write` also stores every batch with `Store.write` into a fresh consumer store (`instance`: its
live file, the upsert that notes superseded rows, the positions), as the consumer does before it
commits to the group. (write − process) / events is the write path's cost per event. Publishing
for readers is not included (it runs every few seconds, not per batch). TREE (another checkout,
say main's) is imported instead of this one.
"""

from __future__ import annotations

import shutil
import sys
import tempfile
import tomllib
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
if len(sys.argv) > 3:
    sys.path.insert(0, sys.argv[3])

from pipeline.config import Config
from pipeline.io.files import FileSource
from pipeline.io.store import Store
from pipeline.runner import Pipeline, streaming_gc

#: Events per batch: a poll of the consumer on the outage backlog returned ~2,900 (one fetch's worth).
BATCH = 2_900


def main(stream: Path, mode: str) -> None:
    config = Config.model_validate(tomllib.loads((stream / "jwtriage.toml").read_text()))
    source = FileSource(stream / "events.jsonl", snapshots=stream / "jwks.jsonl", batch_size=BATCH)
    pipeline = Pipeline(config)
    work = Path(tempfile.mkdtemp(prefix="write-instructions-"))
    store = Store(work / "store.duckdb", instance="bench") if mode == "write" else None
    try:
        with streaming_gc():
            for envelopes in source.batches():
                batch = pipeline.process(envelopes)
                if store is not None:
                    store.write(batch, pipeline.timeline)
    finally:
        if store is not None:
            store.close()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main(Path(sys.argv[1]), sys.argv[2])
