"""`make bench`: speed, memory and size of the app against the seed's way and the machine's limit."""

from pathlib import Path


def write_block(path: Path, begin: str, end: str, block: str) -> None:
    """Put block (which starts with begin and ends with end) in place of the one between begin and the first end
    after it, keeping the rest of the file (which may hold other blocks that end alike); a new file holds block."""
    text = path.read_text() if path.exists() else f"{begin}\n{end}\n"
    before, rest = text.split(begin, 1)
    path.write_text(before + block + rest.split(end, 1)[1])
