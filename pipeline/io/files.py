"""JSONL files on both sides: a backfill or `jwtriage classify` reads them, `classify` and `jwks-watch` write them.

A file's position is its line number, so a backfill that is run twice writes the same
rows again rather than new ones.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from pipeline.engine.keys import KeyTimeline
from pipeline.io.base import DEFAULT_BATCH_SIZE, chunked
from pipeline.models import Classification, JwksSnapshot
from pipeline.records import Batch, Envelope, Position, RecordKind, iter_lines

#: What `Classification.model_dump_json` calls, without its Python frame and per-line decode.
_SERIALIZER = Classification.__pydantic_serializer__


def _plain(text: str) -> bool:
    """Is `text` printable ASCII without a quote or backslash, i.e. its own JSON string between quotes?

    The serializer escapes only `"`, `\\` and control characters; a reused verdict's line is
    its `event_id` so quoted, then the JSON its span's first verdict was serialized to.
    """
    return text.isascii() and text.isprintable() and '"' not in text and "\\" not in text


def file_envelopes(path: Path, kind: RecordKind) -> Iterator[Envelope]:
    """Each non-blank line of a JSONL file; the position is (path, 0, line number)."""
    source = str(path)
    with path.open("rb") as stream:
        for number, line in iter_lines(stream):
            yield Envelope(kind, line, Position(source, 0, number))


@dataclass
class FileSource:
    """A backfill from files: snapshots first, then samples, then events (so joins find their partner)."""

    #: Every snapshot comes before any event (`Pipeline(snapshots_first=...)` then holds no event for one).
    snapshots_first = True

    events: Path
    snapshots: Path | None = None
    samples: Path | None = None
    batch_size: int = DEFAULT_BATCH_SIZE

    def batches(self) -> Iterator[list[Envelope]]:
        for path, kind in ((self.snapshots, RecordKind.SNAPSHOT), (self.samples, RecordKind.SAMPLE)):
            if path is not None:
                yield from chunked(file_envelopes(path, kind), self.batch_size)
        yield from chunked(file_envelopes(self.events, RecordKind.EVENT), self.batch_size)

    def fetch(self, positions: Sequence[Position], max_bytes: int) -> dict[Position, bytes]:
        """Event lines read again by line number (a `pipeline.rejudge.RecordFetcher`); a missing file gives none."""
        return fetch_lines(positions, max_bytes)


def fetch_lines(positions: Sequence[Position], max_bytes: int) -> dict[Position, bytes]:
    """The lines at these (file, 0, line number) positions, up to `max_bytes` in all."""
    by_file: dict[str, set[int]] = {}
    for position in positions:
        by_file.setdefault(position.source, set()).add(position.offset)
    found: dict[Position, bytes] = {}
    spent = 0
    for source, numbers in by_file.items():
        path, last = Path(source), max(numbers)
        if not path.is_file():
            continue
        with path.open("rb") as stream:
            for number, line in iter_lines(stream):
                if number in numbers and spent < max_bytes:
                    found[Position(source, 0, number)] = line
                    spent += len(line)
                if number >= last:
                    break
    return found


class JsonlVerdictSink:
    """`jwtriage classify`'s output: one Classification JSON line per verdict on `out`.

    Dead letters go to `errors` as `jwtriage: file:line: reason` (positions are file lines)
    and are counted in `bad`. Nothing is committed anywhere: the output is the result.
    """

    def __init__(self, out: IO[str], errors: IO[str]) -> None:
        self.out, self.errors = out, errors
        self.bad = 0

    def write(self, batch: Batch, timeline: KeyTimeline) -> None:
        for letter in batch.dead_letters:
            self.bad += 1
            print(f"jwtriage: {letter.position.source}:{letter.position.offset}: {letter.reason}", file=self.errors)
        if batch.judged or batch.lines:  # one serializer call per verdict, one decode and one write per batch
            to_json = _SERIALIZER.to_json
            lines: list[bytes] = []
            made = iter(batch.lines)  # lines made straight from their event's (`engine.line_reuse`), in order
            at, line = next(made, (-1, b""))
            for index, judged in enumerate(batch.judged):
                while at == index:
                    lines.append(line)
                    at, line = next(made, (-1, b""))
                verdict = judged.verdict
                tail = verdict.line_tail
                event_id = verdict.classification.event_id
                if tail is not None and event_id is not None and _plain(event_id):
                    lines.append(b'{"event_id":"' + event_id.encode() + b'"' + tail)
                else:
                    lines.append(to_json(verdict.classification))
            if at >= 0:
                lines.append(line)
                lines.extend(line for _, line in made)
            lines.append(b"")
            self.out.write(b"\n".join(lines).decode())


class JsonlSnapshotSink:
    """Appends one JwksSnapshot JSON line per publish (the `--jwks` input of `jwtriage classify`)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)

    def publish(self, snapshot: JwksSnapshot) -> None:
        with self.path.open("a", encoding="utf-8") as stream:
            stream.write(snapshot.model_dump_json() + "\n")
            stream.flush()

    def close(self) -> None:
        pass

    def last_snapshots(self, chunk: int = 1 << 20) -> dict[str, JwksSnapshot]:
        """The newest snapshot of each issuer in the file, reading it from the end (files grow long)."""
        if not self.path.exists():
            return {}
        size = self.path.stat().st_size
        latest: dict[str, JwksSnapshot] = {}
        window = min(chunk, size)
        with self.path.open("rb") as stream:
            while True:
                stream.seek(size - window)
                lines = stream.read(window).split(b"\n")
                if window < size:
                    lines = lines[1:]  # the first line may be cut
                for line in lines:
                    if not line.strip():
                        continue
                    try:
                        snapshot = JwksSnapshot.model_validate_json(line)
                    except ValueError:
                        continue
                    known = latest.get(snapshot.issuer)
                    if known is None or snapshot.fetched_at >= known.fetched_at:
                        latest[snapshot.issuer] = snapshot
                if latest or window >= size:
                    return latest
                window = min(size, window * 4)
