"""Plain-text tables that line up in a terminal or notebook, Korean text included."""

import unicodedata


def display_width(text):
    """Return the terminal width of ``text``: two columns for each wide (East Asian) character."""
    return sum(2 if unicodedata.east_asian_width(char) in ("W", "F") else 1 for char in text)


def pad(text, width):
    return text + " " * (width - display_width(text))


def format_table(header, rows):
    """Return ``header`` and ``rows`` (lists of strings) as aligned columns with a rule under the header."""
    widths = [max(display_width(row[i]) for row in [header, *rows]) for i in range(len(header))]
    lines = ["  ".join(pad(text, width) for text, width in zip(header, widths)).rstrip()]
    lines.append("  ".join("-" * width for width in widths))
    for row in rows:
        lines.append("  ".join(pad(text, width) for text, width in zip(row, widths)).rstrip())
    return "\n".join(lines)
