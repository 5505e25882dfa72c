"""Instructions per row of the verdicts' Arrow build (`classification_table`), counted by valgrind.

    valgrind --tool=callgrind --callgrind-out-file=/dev/null python bench/table_instructions.py STREAM none [TREE]
    valgrind --tool=callgrind --callgrind-out-file=/dev/null python bench/table_instructions.py STREAM build [TREE]

STREAM is a folder with events.jsonl, jwks.jsonl and jwtriage.toml. Both modes judge the
events through a `Pipeline` in batches of 2,900 (`write_instructions.BATCH`) and warm the
build once (its first call loads pyarrow's kernels and time zone data: one-off, not per
event); `build` then builds every batch's table `REPEATS` times, as the consumer does, under
`streaming_gc`. (build − none) / (rows × REPEATS) is the build's cost per row. With TREE
(another checkout, say main's) that tree's `classification_table` is built (give TREE to
both modes); the pipeline is this tree's either way.
"""

from __future__ import annotations

import sys
import tomllib
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from pipeline.config import Config
from pipeline.io.files import FileSource
from pipeline.runner import Pipeline, streaming_gc

REPEATS = 3


def main(stream: Path, mode: str, tree: str | None) -> None:
    config = Config.model_validate(tomllib.loads((stream / "jwtriage.toml").read_text()))
    pipeline = Pipeline(config)
    source = FileSource(stream / "events.jsonl", snapshots=stream / "jwks.jsonl", batch_size=2_900)
    batches = [batch for batch in map(pipeline.process, source.batches()) if batch.judged]
    if tree is not None:  # the other tree's build, under its own module name (this tree's `pipeline` is loaded)
        from common import module_from_tree

        build = module_from_tree(Path(tree), "pipeline/io/store.py", "other_store").classification_table
    else:
        from pipeline.io.store import classification_table as build
    now = datetime.now(UTC)
    build(batches[0].judged, now)  # warm (in both modes)
    if mode == "build":
        with streaming_gc():
            for _ in range(REPEATS):
                for batch in batches:
                    build(batch.judged, now)
    print(sum(len(batch.judged) for batch in batches), "rows")


if __name__ == "__main__":
    main(Path(sys.argv[1]), sys.argv[2], sys.argv[3] if len(sys.argv) > 3 else None)
