"""CSV cells a spreadsheet shows as text and never runs as a formula (CSV injection).

Excel, LibreOffice and Google Sheets treat a cell starting with `=`, `+`, `-` or `@` as a
formula, and a leading tab, CR or LF can hide one behind what looks like whitespace. Every text
cell the service writes for a user to open (the report and the failed-rows file) goes through
`neutralise`, so one place decides what is safe: an apostrophe in front makes the cell text.
Both are written by `write_csv`, with CRLF line ends (RFC 4180): with pandas' default "\n", a
bare CR inside a cell goes out unquoted, and a spreadsheet that breaks the row there would see
a new cell starting "=1" that no apostrophe protects.
"""

from __future__ import annotations

from typing import IO, Any

import pandas as pd
from pandas.api.types import is_numeric_dtype

# The files are UTF-8; said so, because a download without a charset is read as Latin-1 and
# turns "Zoë" into "ZoÃ«".
CONTENT_TYPE = "text/csv; charset=utf-8"
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r", "\n")


def runs_as_formula(value: Any) -> bool:
    return isinstance(value, str) and value.startswith(FORMULA_STARTS)


def neutralise(value: Any) -> Any:
    """`value` as text a spreadsheet will not evaluate: '=HYPERLINK(..)' stays text."""
    return "'" + value if runs_as_formula(value) else value


def neutralise_frame(frame: pd.DataFrame) -> pd.DataFrame:
    """The frame with every text cell neutralised. Numeric columns (ids, counts, durations)
    are left as numbers: a number is never a formula, and quoting one would turn it to text."""
    for column in frame.columns:
        if is_numeric_dtype(frame[column]):
            continue
        values = frame[column].to_numpy()
        # Found with a comprehension and replaced one by one: most columns have no such cell,
        # and Series.map's call per cell was most of a 50,000-row report's time.
        risky = [i for i, value in enumerate(values) if runs_as_formula(value)]
        if risky:
            values = values.copy()
            for i in risky:
                values[i] = neutralise(values[i])
            frame[column] = values
    return frame


def write_csv(frame: pd.DataFrame, out: IO[str], header: bool) -> None:
    """Append the frame to `out` (opened with newline=""), every text cell neutralised and
    every cell holding a CR or LF quoted."""
    neutralise_frame(frame).to_csv(out, header=header, index=False, lineterminator="\r\n")
