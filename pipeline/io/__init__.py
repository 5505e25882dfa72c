"""The plug point for sources and sinks: where records come from and where verdicts go.

| module | role |
|---|---|
| base | the `Source` and `Sink` contracts and the batching they share |
| memory | `ListSource`, `ListSink`: the in-memory pair for tests and the demo's merged streams |
| files | JSONL files (`jwtriage classify`, backfills) |
| kafka | Kafka on both sides (kafka-python): the consumer's source, the producer, the one client-options builder |
| store | the DuckDB sink and the readers' connection |

A new source or sink is one module here that keeps the contracts of `base`.
"""
