"""The suite's table: one row per thing tried, with what was lost."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class Row:
    """One thing tried: its section, where (adapter, mode), what was done, what was lost, and notes.

    ``lost`` counts broken promises (acknowledged writes gone, histories
    that do not linearize, silent damage); ``None`` means the row could not
    decide, which fails the run like a loss. ``skipped`` rows (a tool is not
    installed) are shown but neither pass nor fail.
    """

    section: str
    where: str
    tried: str
    lost: int | None
    notes: str = ""
    skipped: bool = False

    @property
    def failed(self) -> bool:
        """Whether this row breaks the run: something lost, or undecided."""
        return not self.skipped and (self.lost is None or self.lost > 0)


def todo(section: str, where: str, needs: str) -> Row:
    """A row for a guarantee the suite cannot measure yet."""
    return Row(section, where, "TODO", 0, f"not yet measured: {needs}", skipped=True)


def _lost_cell(row: Row) -> str:
    if row.tried == "TODO":
        return "-"
    if row.skipped:
        return "skipped"
    return "?" if row.lost is None else f"{row.lost}"


def render(rows: list[Row]) -> str:
    """The rows as a Markdown table (readable on a terminal, pasteable into the docs)."""
    header = ("section", "where", "tried", "lost", "notes")
    cells = [(r.section, r.where, r.tried, _lost_cell(r), r.notes) for r in rows]
    widths = [max(len(h), *(len(c[i]) for c in cells)) for i, h in enumerate(header)]
    lines = [
        "| " + " | ".join(h.ljust(w) for h, w in zip(header, widths)) + " |",
        "|" + "|".join("-" * (w + 2) for w in widths) + "|",
    ]
    lines += ["| " + " | ".join(c.ljust(w) for c, w in zip(row, widths)) + " |" for row in cells]
    return "\n".join(lines)
