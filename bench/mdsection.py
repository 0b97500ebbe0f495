"""Replace one generated section of a markdown file, keeping the rest of it as written.

docs/robustness.md is shared by bench/fuzz.py and bench/bad_inputs.py; each owns the text
between its own `<!-- NAME:begin -->` and `<!-- NAME:end -->` markers.
"""

from __future__ import annotations

from pathlib import Path

from bench.benchlib import atomic_write


def replace_section(path: str | Path, name: str, body: str) -> None:
    """Put body between the markers of section name (appended if they are missing)."""
    begin, end = f"<!-- {name}:begin -->", f"<!-- {name}:end -->"
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        text = ""
    block = f"{begin}\n{body.strip()}\n{end}"
    if begin in text and end in text:
        head, rest = text.split(begin, 1)
        text = head + block + rest.split(end, 1)[1]
    else:
        text = text.rstrip() + ("\n\n" if text.strip() else "") + block + "\n"
    atomic_write(Path(path), text)
