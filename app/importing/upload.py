"""Reading a submitted batch: a JSON array, or a CSV file with the same column names."""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from app.importing.aliases import canonical_record, flatten_single_connect


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
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise UploadError(422, "file: must be UTF-8 encoded CSV") from None
    if not text.strip():
        raise UploadError(422, "file: is empty; expected a header line and at least one row")
    try:
        # Every cell stays text: validation decides what a port or a blank means, not pandas.
        frame = pd.read_csv(io.StringIO(text), dtype=str, keep_default_na=False,
                            skipinitialspace=True)
    except (pd.errors.ParserError, csv.Error) as exc:
        raise UploadError(422, f"file: is not valid CSV ({exc})") from None
    except pd.errors.EmptyDataError:
        raise UploadError(422, "file: has no header line") from None
    frame.columns = [str(c).strip() for c in frame.columns]
    _check_size(len(frame), max_rows)
    return _canonical_batch(frame.to_dict(orient="records"))


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
    # Column names are stored for the status; PostgreSQL refuses NUL in text.
    return Batch(records=canonical,
                 ignored_columns=sorted({name.replace("\x00", "") for name in ignored}))


def _check_size(count: int, max_rows: int) -> None:
    if count == 0:
        raise UploadError(422, "body: must contain at least one account")
    if count > max_rows:
        raise UploadError(413, f"body: has {count} accounts; at most {max_rows} per request")
