"""Writing (malformed) scenario files for the scenario and command-line tests."""

from pathlib import Path


def write_case(folder: Path, content: str | bytes | None) -> Path:
    """Write `folder/case.toml` with `content` (None: leave it missing); return its path."""
    path = folder / "case.toml"
    if isinstance(content, bytes):
        path.write_bytes(content)
    elif content is not None:
        path.write_text(content, encoding="utf-8")
    return path
