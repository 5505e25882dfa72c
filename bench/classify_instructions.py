"""Instructions per event of `jwtriage classify`'s path, counted by valgrind: a figure the machine's load cannot move.

    valgrind --tool=callgrind --callgrind-out-file=/dev/null python bench/classify_instructions.py STREAM read [TREE]
    valgrind --tool=callgrind --callgrind-out-file=/dev/null python bench/classify_instructions.py STREAM full [TREE]

STREAM is a folder with events.jsonl, jwks.jsonl and jwtriage.toml (an outage stream's, or a slice of
its events). `read` only reads the event batches; `full` also runs them through the pipeline and the
printing sink, as `classify` does. (full − read) / events is the path's cost per event. On a 2-core
machine shared by other sessions, wall and CPU times move by 10–50% from one minute to the next;
instruction counts move by well under 1% (a valgrind run is ~50x slower: use a slice of ~30,000 events).
TREE (another checkout, say main's) is imported instead of this one; one without `snapshots_first` or `reused_lines`
runs without it (each is switched on as `classify` does where the tree knows it).
"""

from __future__ import annotations

import inspect
import io
import sys
import tomllib
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
if len(sys.argv) > 3:
    sys.path.insert(0, sys.argv[3])

from pipeline.config import Config
from pipeline.io.files import FileSource, JsonlVerdictSink
from pipeline.records import RecordKind
from pipeline.runner import Pipeline, streaming_gc


def main(stream: Path, mode: str) -> None:
    config = Config.model_validate(tomllib.loads((stream / "jwtriage.toml").read_text()))
    source = FileSource(stream / "events.jsonl", snapshots=stream / "jwks.jsonl")
    known = inspect.signature(Pipeline).parameters
    pipeline = Pipeline(config, **{name: True for name in ("snapshots_first", "reused_lines") if name in known})
    sink = JsonlVerdictSink(io.StringIO(), io.StringIO())
    with streaming_gc():
        for envelopes in source.batches():
            if mode == "full" or envelopes[0].kind is not RecordKind.EVENT:
                sink.write(pipeline.process(envelopes), pipeline.timeline)


if __name__ == "__main__":
    main(Path(sys.argv[1]), sys.argv[2])
