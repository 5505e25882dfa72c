"""Summary tables for the terminal (rich) that fit its width without breaking a name mid-word.

`demo` and `triage` print their findings as these tables; at 80 columns rich would narrow the
widest wrapping columns past their longest word ("partner-gatewa" over "y 137").
"""

from __future__ import annotations

import io

from rich import box
from rich.cells import cell_len
from rich.console import Console
from rich.table import Column, Table
from rich.text import Text


def summary_table(title: str) -> Table:
    """Light rules, no outer padding; columns fold long words, never cut them."""
    return Table(title=title, title_justify="left", box=box.SIMPLE_HEAD, pad_edge=False)


def _plain(cell: object) -> str:
    return cell.plain if isinstance(cell, Text) else Text.from_markup(str(cell)).plain


def keep_words_whole(table: Table, width: int) -> bool:
    """Leaves the table to rich where rich keeps every word whole at `width`; else sets the widths itself.

    Each wrapping column then gets at least its longest word, and the rest of the line is shared
    out so that the columns wanting least more are whole first (water-filling). False, and the table
    left to rich, when even the longest words do not fit.
    """
    if _rich_keeps_words(table, width):
        return True
    left, right = table.padding[3], table.padding[1]  # top, right, bottom, left
    overhead = (2 if table.show_edge else 0) + len(table.columns) - 1  # the box's edges and dividers
    overhead += len(table.columns) * (left + right) - (0 if table.pad_edge else left + right)
    fixed, least, most = 0, [], []
    for column in table.columns:
        lines = [line for text in _texts(column) for line in text.splitlines()]
        longest = max((cell_len(line) for line in lines), default=0)
        if column.no_wrap:
            fixed += max(longest, column.min_width or 0)
        else:
            least.append(max((cell_len(word) for line in lines for word in line.split()), default=1))
            most.append(longest)
    room = width - overhead - fixed
    if room < sum(least):
        return False
    extra = _water_fill([m - n for n, m in zip(least, most, strict=True)], room - sum(least))
    wrapping = iter(n + e for n, e in zip(least, extra, strict=True))
    for column in table.columns:
        if not column.no_wrap:
            column.width = next(wrapping)
    return True


def _texts(column: Column) -> list[str]:
    return [_plain(column.header), *(_plain(cell) for cell in column.cells)]


def _rich_keeps_words(table: Table, width: int) -> bool:
    console = Console(width=width, file=io.StringIO(), color_system=None)
    with console.capture() as drawn:
        console.print(table)
    words = {word for column in table.columns for text in _texts(column) for word in text.split()}
    return words <= set(drawn.get().split())


def _water_fill(wants: list[int], spare: int) -> list[int]:
    """`spare` shared so that every want at or below a common level is met in full, the rest get the level."""
    given = [0] * len(wants)
    waiting = sorted(range(len(wants)), key=lambda i: wants[i])
    while waiting:
        level, odd = divmod(spare, len(waiting))
        if wants[waiting[0]] > level:
            for k, i in enumerate(waiting):
                given[i] = level + (1 if k < odd else 0)
            break
        i = waiting.pop(0)
        given[i] = wants[i]
        spare -= wants[i]
    return given
