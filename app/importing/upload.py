"""Reading a submitted batch: a JSON array, or a CSV file with the same column names."""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from app.importing.aliases import canonical_record, flatten_single_connect

# Bounds on what the status echoes back: unrecognised columns, and how long each name may be.
MAX_COLUMNS = 200
MAX_COLUMN_NAME = 100


class UploadError(ValueError):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


@dataclass(frozen=True)
class Batch:
    records: list[Any]
    ignored_columns: list[str] = field(default_factory=list)


def batch_from_json(payload: Any, max_rows: int) -> Batch:
    if not isinstance(payload, list):
        raise UploadError(422, "body: must be a JSON array of account objects")
    _check_size(len(payload), max_rows)
    return _canonical_batch(payload)


def batch_from_csv(data: bytes, max_rows: int) -> Batch:
    text = _csv_text(data)
    if not text.strip():
        raise UploadError(422, "file: is empty; expected a header line and at least one row")
    _check_shape(text)
    try:
        # Every cell stays text: validation decides what a port or a blank means, not pandas.
        frame = pd.read_csv(io.StringIO(text), dtype=str, keep_default_na=False,
                            skipinitialspace=True)
    except (pd.errors.ParserError, csv.Error) as exc:
        raise UploadError(422, f"file: is not valid CSV ({str(exc).strip()})") from None
    except pd.errors.EmptyDataError:
        raise UploadError(422, "file: has no header line") from None
    frame.columns = [str(c).strip() for c in frame.columns]
    _check_size(len(frame), max_rows)
    return _canonical_batch(frame.to_dict(orient="records"))


# Spreadsheets save "Unicode text" as UTF-16 with a byte-order mark; anything else is UTF-8.
_UTF16_BOMS = (b"\xff\xfe", b"\xfe\xff")


def _csv_text(data: bytes) -> str:
    encoding = "utf-16" if data.startswith(_UTF16_BOMS) else "utf-8-sig"
    try:
        return data.decode(encoding)
    except UnicodeDecodeError as exc:
        raise UploadError(422, f"file: is not valid {encoding.removesuffix('-sig').upper()} "
                               f"(byte {exc.start}); save the CSV as UTF-8") from None


def _check_shape(text: str) -> None:
    """Refuse what pandas would read wrongly rather than refuse: a first row longer than the
    header (pandas silently turns its first cells into an index, shifting every value) and a
    column named twice (pandas renames the second `name.1`, and one of the two is lost)."""
    reader = csv.reader(io.StringIO(text), skipinitialspace=True)
    try:
        header = next(reader, [])
        first = next(reader, None)
    except csv.Error as exc:
        raise UploadError(422, f"file: is not valid CSV ({str(exc).strip()})") from None
    names = [name.strip() for name in header]
    if any("\x00" in name for name in names):
        raise UploadError(422, "file: the header line contains NUL bytes (a UTF-16 file "
                               "without its byte-order mark?); save the CSV as UTF-8")
    if len(names) > MAX_COLUMNS:
        raise UploadError(422, f"file: has {len(names)} columns; at most {MAX_COLUMNS}")
    twice = sorted({name for name in names if name and names.count(name) > 1})
    if twice:
        raise UploadError(422, f"file: column {twice[0]!r} appears more than once in the "
                               "header line")
    if first is not None and len(first) > len(names):
        raise UploadError(422, f"file: row 1 has {len(first)} cells but the header line has "
                               f"{len(names)} columns")


def _canonical_batch(records: list[Any]) -> Batch:
    # Other tools' column names become ours; a row that is not an object stays as it is, for
    # validation to reject.
    canonical: list[Any] = []
    ignored: set[str] = set()
    for record in records:
        if isinstance(record, dict):
            record, unrecognised = canonical_record(flatten_single_connect(record))
            ignored.update(unrecognised)
        canonical.append(record)
    if len(ignored) > MAX_COLUMNS:
        raise UploadError(422, f"body: has {len(ignored)} unrecognised columns; at most "
                               f"{MAX_COLUMNS}")
    # Column names are stored for the status; PostgreSQL refuses NUL in text.
    return Batch(records=canonical, ignored_columns=sorted(
        {_shortened(name.replace("\x00", "")) for name in ignored}))


def _shortened(name: str) -> str:
    # The status lists unrecognised columns; a name the size of the body need not be echoed.
    return name if len(name) <= MAX_COLUMN_NAME else name[:MAX_COLUMN_NAME - 1] + "\u2026"


def _check_size(count: int, max_rows: int) -> None:
    if count == 0:
        raise UploadError(422, "body: must contain at least one account")
    if count > max_rows:
        raise UploadError(413, f"body: has {count} accounts; at most {max_rows} per request")
