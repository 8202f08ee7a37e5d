"""Reading report tables for the text CLIs: inline report text or paths to report files.

A manifest's text column may hold the report itself or a path to a UTF-8 text file
(relative to the manifest's folder, as in the phantom manifest). A cell is read as a file
when it is a single short line ending in ``.txt``/``.md``/``.text`` or names an existing
file; a missing or unreadable file is reported and that report is treated as empty.
"""

from __future__ import annotations

import logging
from pathlib import Path

import pandas as pd

log = logging.getLogger(__name__)

_FILE_SUFFIXES = (".txt", ".md", ".text")


def read_table(path: str | Path, id_column: str, text_column: str) -> pd.DataFrame:
    """Read a CSV (or Parquet) and check that the id and text columns exist.

    Raises:
        ValueError: naming the file and the missing column.
    """
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"{path}: no such file")
    frame = pd.read_parquet(path) if path.suffix == ".parquet" else pd.read_csv(path, dtype=str)
    for column in (id_column, text_column):
        if column not in frame.columns:
            raise ValueError(f"{path}: no column {column!r}; columns are {list(frame.columns)}")
    frame[id_column] = frame[id_column].astype(str)
    duplicated = frame[id_column][frame[id_column].duplicated()].unique().tolist()
    if duplicated:
        raise ValueError(f"{path}: duplicated ids in {id_column!r}: {duplicated[:5]}")
    return frame


def _looks_like_path(cell: str, base: Path) -> bool:
    """A single short line ending in a text suffix, or naming an existing file."""
    if "\n" in cell or len(cell) > 255 or ". " in cell:
        return False
    if cell.lower().endswith(_FILE_SUFFIXES):
        return True
    try:
        return (base / cell).is_file()
    except OSError:  # e.g. a name too long for the file system: it is text
        return False


def resolve_texts(frame: pd.DataFrame, text_column: str, base: Path) -> tuple[list[str], list[str]]:
    """Return (report texts, read problems) for a table's text column.

    Args:
        frame: the table.
        text_column: column holding text or paths.
        base: folder that relative paths are relative to (the table's folder).

    Returns:
        One text per row ("" when missing) and one problem string per row ("" when fine).
    """
    texts, problems = [], []
    for value in frame[text_column].tolist():
        cell = "" if value is None or (isinstance(value, float) and value != value) else str(value)
        stripped = cell.strip()
        if not stripped or not _looks_like_path(stripped, base):
            texts.append(cell)
            problems.append("")
            continue
        file_path = Path(stripped) if Path(stripped).is_absolute() else base / stripped
        try:
            texts.append(file_path.read_text(encoding="utf-8"))
            problems.append("")
        except (OSError, UnicodeDecodeError) as err:
            log.warning("cannot read report file %s: %s", file_path, err)
            texts.append("")
            problems.append("unreadable_report_file")
    return texts, problems
