"""Helpers of the scenario and command-line tests: (malformed) files, one-line errors."""

from pathlib import Path


def write_case(folder: Path, content: str | bytes | None) -> Path:
    """Write `folder/case.toml` with `content` (None: leave it missing); return its path."""
    path = folder / "case.toml"
    if isinstance(content, bytes):
        path.write_bytes(content)
    elif content is not None:
        path.write_text(content, encoding="utf-8")
    return path


def assert_one_line_error(err: str, *parts: str) -> None:
    """`err` is exactly one line: the CLI error prefix, then a message containing `parts`."""
    assert err.endswith("\n") and err.count("\n") == 1, repr(err)
    assert err.startswith("tissue-abm: error: "), repr(err)
    assert "Traceback" not in err
    for part in parts:
        assert part in err, f"{part!r} missing from {err!r}"
