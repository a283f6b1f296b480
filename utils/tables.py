"""Plain-text tables for the terminal: the one formatter behind fusion's and predict's output."""


def format_table(header: list[str], rows: list[list], right: set[int] | None = None) -> str:
    """Columns as wide as their widest cell; columns in ``right`` are right-aligned (numbers)."""
    right = right or set()
    cells = [[str(c) for c in header]] + [[str(c) for c in row] for row in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(header))]
    lines = []
    for row in cells:
        parts = [
            cell.rjust(widths[i]) if i in right else cell.ljust(widths[i])
            for i, cell in enumerate(row)
        ]
        lines.append("  ".join(parts).rstrip())
    return "\n".join(lines)
