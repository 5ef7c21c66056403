"""Rendering benchmark rows: a fixed-width table for the terminal and a markdown document.

Pure functions of :class:`~resilientrpc.bench.results.Row` values; no I/O.
"""

from __future__ import annotations

from collections.abc import Sequence

from resilientrpc.bench.results import Row

__all__ = ["HEADERS", "markdown_document", "markdown_table", "text_table"]

HEADERS = ("Scenario", "Twin", "Comparison", "Value", "Goal", "Verdict", "Context")


def _cells(row: Row) -> tuple[str, ...]:
    goal = str(row.goal) if row.goal is not None else ""
    return (
        row.scenario,
        row.twin,
        row.subject,
        row.shown_value,
        goal,
        row.verdict,
        row.context,
    )


def text_table(rows: Sequence[Row]) -> str:
    """The rows as an aligned plain-text table, one line per row."""
    table = [HEADERS, *(_cells(row) for row in rows)]
    widths = [max(len(line[column]) for line in table) for column in range(len(HEADERS))]
    lines = []
    for index, line in enumerate(table):
        lines.append(
            "  ".join(cell.ljust(width) for cell, width in zip(line, widths, strict=True)).rstrip()
        )
        if index == 0:
            lines.append("  ".join("-" * width for width in widths))
    return "\n".join(lines)


def _escape(cell: str) -> str:
    return cell.replace("|", "\\|")


def markdown_table(rows: Sequence[Row]) -> str:
    """The rows as a GitHub-flavoured markdown table."""
    lines = [
        "| " + " | ".join(HEADERS) + " |",
        "|" + "|".join("---" for _ in HEADERS) + "|",
    ]
    for row in rows:
        lines.append("| " + " | ".join(_escape(cell) for cell in _cells(row)) + " |")
    return "\n".join(lines)


def markdown_document(rows: Sequence[Row], *, command: str, notes: Sequence[str]) -> str:
    """A short markdown report: the command, notes about the run, and the table."""
    verdicts = [row.verdict for row in rows if row.goal is not None]
    passed = verdicts.count("PASS")
    parts = [
        "# resilientrpc benchmark run",
        "",
        f"Command: `{command}`",
        "",
        *(f"- {note}" for note in notes),
        "",
        f"Goals met: {passed} of {len(verdicts)}.",
        "",
        markdown_table(rows),
        "",
    ]
    return "\n".join(parts)
