"""How node states look on a terminal: rich tables for live views, plain lines for pipes and logs.

Pure functions of immutable :class:`~magk_client.node_state.NodeExecutionState` snapshots (no
locks, no threads, no clock). ``rich`` is imported only by the functions that build rich objects,
so plain output works without the ``cli`` extra.
"""

from __future__ import annotations

from typing import Any, Dict, Iterable, List, Optional, Sequence, Tuple

from ..node_state import NodeExecutionState

__all__ = [
    "STATUS_STYLES",
    "bar",
    "node_percentage",
    "node_lines",
    "node_table",
    "plain_table",
    "select_rows",
    "status_counts",
    "summary_line",
]

STATUS_STYLES = {
    "completed": "green",
    "running": "cyan",
    "paused": "yellow",
    "error": "bold red",
    "pending": "dim",
    "idle": "dim",
}
#: statuses shown first when a table has more nodes than rows: what needs attention now
_ACTIVE = ("error", "running", "paused")


def node_percentage(state: NodeExecutionState) -> Optional[float]:
    """The node's progress in percent; 100 for a completed node that reported none (a skip)."""
    value = state.percentage
    if value is None and str(state.status) == "completed":
        return 100.0
    return None if value is None else max(0.0, min(100.0, value))


def bar(fraction: float, width: int = 20) -> str:
    filled = round(max(0.0, min(1.0, fraction)) * width)
    return "#" * filled + "." * (width - filled)


def _note(state: NodeExecutionState) -> str:
    """What a node says about itself: its error, else the size of its result, else its progress
    message, else nothing."""
    error = state.error_message
    if error:
        return error
    result = state.result
    rows = result.get("rowCount") if result is not None else None
    if rows is not None:
        return f"result: {rows} rows"
    progress = state.progress
    message = progress.get("message") if progress is not None else None
    return str(message) if message is not None else ""


def status_counts(states: Iterable[NodeExecutionState]) -> Dict[str, int]:
    counts: Dict[str, int] = {}
    for state in states:
        key = str(state.status)
        counts[key] = counts.get(key, 0) + 1
    return counts


def summary_line(workflow_id: str, workflow_status: str, states: Sequence[NodeExecutionState]) -> str:
    """``wf-1 running: 3 nodes; completed 1, running 1, pending 1``."""
    counts = status_counts(states)
    parts = ", ".join(f"{name} {counts[name]}" for name in sorted(counts))
    return f"{workflow_id} {workflow_status}: {len(states)} node(s)" + (f"; {parts}" if parts else "")


def select_rows(
    states: Sequence[NodeExecutionState], max_rows: Optional[int]
) -> Tuple[List[NodeExecutionState], int]:
    """The rows to show, in workflow order, and how many are left out: all of them when they fit;
    otherwise the nodes that need attention (error, then running, then paused) and then the first
    others, ``max_rows`` in all. About O(n), so a 1,000-node workflow costs a pass or two."""
    if max_rows is None or len(states) <= max_rows:
        return list(states), 0
    rank = {name: i for i, name in enumerate(_ACTIVE)}
    active = sorted(
        (i for i, s in enumerate(states) if str(s.status) in rank), key=lambda i: rank[str(states[i].status)]
    )
    chosen = set(active[:max_rows])
    for i in range(len(states)):
        if len(chosen) >= max_rows:
            break
        chosen.add(i)
    return [states[i] for i in sorted(chosen)], len(states) - len(chosen)


def node_table(
    states: Sequence[NodeExecutionState],
    *,
    title: Optional[str] = None,
    max_rows: Optional[int] = None,
    caption: Optional[str] = None,
) -> Any:
    """A rich ``Table``: node, status, a progress bar, its note, logs, last update, version."""
    from rich.progress_bar import ProgressBar
    from rich.table import Table
    from rich.text import Text

    rows, hidden = select_rows(states, max_rows)
    table = Table(title=title, caption=caption, expand=False)
    table.add_column("node", no_wrap=True)
    table.add_column("status", no_wrap=True)
    table.add_column("progress", no_wrap=True, width=24)
    table.add_column("%", justify="right", no_wrap=True)
    table.add_column("note", overflow="ellipsis", no_wrap=True, max_width=48)
    table.add_column("logs", justify="right")
    table.add_column("updated", no_wrap=True)
    table.add_column("v", justify="right")
    for state in rows:
        status = str(state.status)
        pct = node_percentage(state)
        table.add_row(
            state.node_id,
            Text(status, style=STATUS_STYLES.get(status, "")),
            ProgressBar(total=100.0, completed=pct or 0.0, width=24),
            "" if pct is None else f"{pct:.0f}%",
            Text(_note(state), style="red" if state.error is not None else ""),
            str(len(state.logs)),
            _clock(state.last_updated),
            str(state.version),
        )
    if hidden:
        table.add_row(Text(f"... {hidden} more node(s)", style="dim"), "", "", "", "", "", "", "")
    return table


def node_lines(states: Sequence[NodeExecutionState], *, max_rows: Optional[int] = None) -> Any:
    """The live table of ``watch``: one rich ``Text``, a line per node in fixed-width columns
    (node, status, a bar, percent, logs, last update, note), cropped to the terminal's width.

    A rich ``Table`` measures and pads every cell of every row on each redraw: about 1 ms a row
    here, so 40 rows at 4 redraws a second would take a sixth of a core. One ``Text`` of
    pre-formatted lines draws the same rows about 20 times faster (benchmarks/bench_watch.py).
    """
    from rich.text import Text

    rows, hidden = select_rows(states, max_rows)
    name_width = min(24, max([4] + [len(s.node_id) for s in rows]))
    text = Text(no_wrap=True, overflow="ellipsis")
    text.append(f"{'node':<{name_width}}  {'status':<10} {'progress':<{_BAR}} {'%':>4} {'logs':>4} "
                f"{'updated':<12}  note\n", style="bold")
    for state in rows:
        status = str(state.status)
        style = STATUS_STYLES.get(status, "")
        pct = node_percentage(state)
        filled = round((pct or 0.0) / 100.0 * _BAR)
        text.append(f"{state.node_id[:name_width]:<{name_width}}  ")
        text.append(f"{status:<10} ", style=style)
        text.append("━" * filled, style=style or "cyan")
        text.append("─" * (_BAR - filled) + " ", style="grey37")
        shown = "" if pct is None else f"{pct:.0f}%"
        text.append(f"{shown:>4} {len(state.logs):>4} {_clock(state.last_updated):<12}  ")
        text.append(_note(state) + "\n", style="red" if state.error is not None else "")
    if hidden:
        text.append(f"... {hidden} more node(s)\n", style="dim")
    text.rstrip()
    return text


#: width of the bars of :func:`node_lines`
_BAR = 20


def plain_table(states: Sequence[NodeExecutionState]) -> List[str]:
    """The same table as aligned plain text lines (no colour, no box drawing)."""
    header = ("node", "status", "progress", "logs", "version", "note")
    rows = [
        (
            s.node_id,
            str(s.status),
            "" if node_percentage(s) is None else f"{node_percentage(s):.0f}%",
            str(len(s.logs)),
            str(s.version),
            _note(s),
        )
        for s in states
    ]
    widths = [max([len(header[i])] + [len(r[i]) for r in rows]) for i in range(len(header) - 1)]

    def line(cells: Sequence[str]) -> str:
        return "  ".join(c.ljust(w) for c, w in zip(cells, widths)) + "  " + cells[-1]

    return [line(header).rstrip()] + [line(r).rstrip() for r in rows]


def status_line(state: NodeExecutionState) -> str:
    """One plain line for a node: ``n-1  running  [######..............]  33%``."""
    pct = node_percentage(state)
    progress = f"  [{bar(pct / 100.0)}] {pct:3.0f}%" if pct is not None else ""
    note = _note(state) if state.error is not None else ""
    return (f"{state.node_id:<10} {state.status!s:<10}{progress}" + (f"  {note}" if note else "")).rstrip()


def _clock(timestamp: Optional[str]) -> str:
    """``2026-01-02T10:11:12.345Z`` -> ``10:11:12.345`` (the date is rarely news on a live table)."""
    if not timestamp:
        return ""
    _, sep, rest = timestamp.partition("T")
    return rest.rstrip("Z") if sep else timestamp
