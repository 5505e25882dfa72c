"""`jwtriage sql`: query the store with DuckDB, read-only, without installing the duckdb CLI.

With a QUERY it prints the result as a table (or CSV with --csv); without one it prints the
statement that opens the store from plain DuckDB and the tables the store holds. It reads
through `connect_readonly`, like every other reader, so it works while a consumer writes and
never changes the store.
"""

from __future__ import annotations

import argparse
import csv
from pathlib import Path
from typing import IO, Any

import duckdb
from rich import box
from rich.table import Table

from pipeline.commands.common import EXIT_OK, reader_store_flags, store_path, terminal
from pipeline.errors import UsageError
from pipeline.io.store_parts import is_parts_store
from pipeline.io.store_readers import connect_readonly, published_parts
from pipeline.io.store_schema import parts_dir, sql_path

#: Rows shown in a table before the rest is only counted (use LIMIT, or --csv for everything).
MAX_ROWS = 200


def register(commands: Any) -> None:
    parser = commands.add_parser(
        "sql",
        help="run a read-only SQL query on the store (DuckDB), or show how to open it",
        description="Run one SQL query on the store, read-only, and print the result. Times are UTC (the "
        "session's TimeZone), as every other command shows them. Without QUERY: the statement that opens the "
        "store from plain DuckDB, and the store's tables.",
        epilog='Example: jwtriage sql --db jwtriage-demo.duckdb "SELECT cause, count(*) FROM classifications '
        'GROUP BY ALL ORDER BY 2 DESC"',
    )
    reader_store_flags(parser)
    parser.add_argument("--csv", action="store_true", help="print CSV (every row) instead of a table")
    parser.add_argument("query", nargs="?", metavar="QUERY", help="one SQL statement")
    parser.set_defaults(handler=cmd_sql)


def cmd_sql(args: argparse.Namespace, stdin: IO[bytes], stdout: IO[str]) -> int:
    path = store_path(args)
    con = connect_readonly(path)  # a StoreError is a JwtriageError: one line, exit 2
    try:
        if not args.query:
            _print_how_to_open(con, str(path), stdout)
            return EXIT_OK
        try:
            cursor = con.execute(args.query)
        except duckdb.Error as exc:  # its first line, and DuckDB's own hint; not the query it quotes after them
            lines = str(exc).splitlines()
            hint = next((f" ({line.strip()})" for line in lines[1:] if line.startswith("Did you mean")), "")
            raise UsageError(f"query failed: {lines[0]}{hint}") from None
        if cursor.description is None:
            return EXIT_OK
        names = [d[0] for d in cursor.description]
        if args.csv:
            writer = csv.writer(stdout, lineterminator="\n")
            writer.writerow(names)
            writer.writerows(cursor.fetchall())
            return EXIT_OK
        rows = cursor.fetchmany(MAX_ROWS + 1)
        table = Table(box=box.SIMPLE_HEAD, pad_edge=False)
        for name in names:
            table.add_column(name, overflow="fold")
        for row in rows[:MAX_ROWS]:
            table.add_row(*("NULL" if v is None else str(v) for v in row))
        console = terminal(stdout, highlight=False)
        console.print(table)
        if len(rows) > MAX_ROWS:
            console.print(f"[dim]first {MAX_ROWS} rows shown; add LIMIT/OFFSET, or --csv for every row[/]")
    finally:
        con.close()
    return EXIT_OK


def _print_how_to_open(con: duckdb.DuckDBPyConnection, path: str, stdout: IO[str]) -> None:
    opened = path
    if path.startswith("ducklake:"):
        intro = ("The store is a DuckLake its consumers share. Open it from plain DuckDB with the ducklake, postgres "
                 "and httpfs extensions loaded and an S3 secret for its data path (read-only):")
    elif is_parts_store(parts_dir(path)):
        intro = (f"The store {path} is a DuckDB file of views over the Parquet files consumers append in "
                 f"{parts_dir(path)}/. Open it from plain DuckDB (read-only, safe while they write):")
    elif published_parts(path):
        intro = (f"The store {path} is the snapshots consumers publish in {parts_dir(path)}/: attach one read-only "
                 "from plain DuckDB (or use `jwtriage sql`, which combines them):")
        opened = str(published_parts(path)[0])
    else:
        intro = "Open it from plain DuckDB (read-only, safe while nothing else writes it):"
    stdout.write(f"{intro}\n  ATTACH '{sql_path(Path(opened))}' AS jwtriage (READ_ONLY); USE jwtriage;\n")
    stdout.write("  SET TimeZone = 'UTC';  -- as jwtriage reads times (this command does)\n")
    tables = con.execute(
        "SELECT table_name, table_type FROM information_schema.tables "
        "WHERE table_schema = 'main' ORDER BY table_name"
    ).fetchall()
    stdout.write("Tables: " + ", ".join(f"{name}{' (view)' if kind == 'VIEW' else ''}" for name, kind in tables))
    example = "SELECT cause, count(*) FROM classifications GROUP BY ALL"
    stdout.write(f'\nExample: jwtriage sql --db {path} "{example}"\n')
