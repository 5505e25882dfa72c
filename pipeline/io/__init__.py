"""The plug point for sources and sinks: where records come from and where verdicts go.

| module | role |
|---|---|
| base | the contracts: `Source`, `CommittingSource` (+ `commit`), `Sink`, `SnapshotSink` |
| memory | `ListSource`, `ListSink`, `ListSnapshotSink`: in-memory doubles for tests; the demo's merged streams |
| files | JSONL files: `FileSource` (classify, backfills), `JsonlVerdictSink` (classify's output), `JsonlSnapshotSink` |
| kafka | Kafka on both sides (kafka-python): `KafkaSource`, the producers, the one client-options builder |
| kafka_options | the `[kafka]` pass-through table (from kafka-python itself), secrets, SSL context, OAUTH provider |
| formats | event formats by name (`jwtriage` today): raw bytes → `AuthFailureEvent`, skip, or a dead letter |
| store | the DuckDB sink (`Store`, the writer) |
| store_schema | the store's DDL, version and migrations, and the version check writer and readers share |
| store_readers | the readers' connection (`connect_readonly`) over what the writers published |

A new source or sink is one module here that keeps the contracts of `base`; a new event
format (a gateway's access log) is one decoder registered in `formats`. `runner.run` is the
one loop that joins a source to a sink.
"""
