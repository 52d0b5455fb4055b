"""Re-encrypting every stored secret under the first key of CREDENTIALS_KEYS.

`rotate_credentials` walks each encrypted column by id (keyset pagination: a batch starts after
the last id of the one before, so a late batch costs what the first did). A batch is read, its
tokens are re-encrypted with no database work open, and the new tokens are written in one
transaction. Each write is fenced on the token it replaces, so a change that lands between the
read and the write (a PATCH with new passwords, a DELETE, a job row finishing and clearing its
credentials) wins and is never overwritten with the older secrets.

A run can stop anywhere: every written batch is committed, and the next run skips each token
already under the first key after a single decryption attempt with that key, so it finishes
what is left. Workers keep running meanwhile: every configured key still decrypts.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from sqlalchemy import Column, bindparam, func, select, update

from app.credentials import CredentialCipher, CredentialError
from app.db import Database
from app.models import ConnectJobRow, EmailAccount, OAuthApp, Team

# A row whose fenced write lost to a change is re-read and written again, up to this many writes
# in all; past that it is left as it is (the report says so, and the next run takes it).
_RACE_ROUNDS = 3
# Failed ids kept for the report; a wrong CREDENTIALS_KEYS fails every row, and the count
# says how many there were.
MAX_FAILED_IDS = 1000


@dataclass(frozen=True)
class EncryptedColumn:
    """A column of CredentialCipher tokens, in a table whose primary key is an integer `id`."""

    name: str  # as the progress lines say it
    column: Column


# Job rows before accounts: a connect row claimed before its own token was rotated saves its
# account with that older token, so the accounts go last to catch as many of those as they can.
ENCRYPTED_COLUMNS: tuple[EncryptedColumn, ...] = (
    EncryptedColumn("webhook secrets", Team.__table__.c.webhook_secret),
    EncryptedColumn("OAuth app secrets", OAuthApp.__table__.c.client_secret),
    EncryptedColumn("job rows", ConnectJobRow.__table__.c.credentials),
    EncryptedColumn("accounts", EmailAccount.__table__.c.credentials),
)


@dataclass
class ColumnProgress:
    name: str
    total: int  # tokens stored when the run started
    checked: int = 0
    rotated: int = 0  # re-encrypted by this run
    current: int = 0  # already under the first key (an earlier run, or a newer write)
    vanished: int = 0  # deleted or cleared between our read and our write
    unsettled: int = 0  # still changing after _RACE_ROUNDS writes; left for the next run
    failed: int = 0  # no configured key decrypts it
    failed_ids: list[int] = field(default_factory=list)  # the first MAX_FAILED_IDS of them

    @property
    def complete(self) -> bool:
        """Every token this run saw is now under the first key (or gone)."""
        return not self.failed and not self.unsettled

    def line(self) -> str:
        return (f"{self.name}: {self.checked}/{self.total} checked, {self.rotated} re-encrypted, "
                f"{self.current} already under the first key, {self.failed} failed")

    def summary(self) -> str:
        text = f"{self.line()}; {self.vanished} changed or deleted meanwhile (their change kept)"
        if self.unsettled:
            text += f"; {self.unsettled} still changing, not re-encrypted: run again"
        return text

    def failed_line(self) -> str:
        """The ids of the tokens no key decrypts (never a value)."""
        more = self.failed - len(self.failed_ids)
        return (f"{self.name} that no key of CREDENTIALS_KEYS decrypts, by id: "
                f"{', '.join(map(str, self.failed_ids))}{f' (and {more} more)' if more else ''}")


@dataclass(frozen=True)
class RotationSummary:
    columns: list[ColumnProgress]

    @property
    def complete(self) -> bool:
        return all(c.complete for c in self.columns)


def rotate_credentials(db: Database, cipher: CredentialCipher, *, batch_size: int = 500,
                       on_batch: Callable[[ColumnProgress], None] = lambda _: None,
                       columns: Sequence[EncryptedColumn] = ENCRYPTED_COLUMNS
                       ) -> RotationSummary:
    """Re-encrypt every token of `columns` under the cipher's first key, `batch_size` rows per
    transaction; `on_batch` hears the column's progress after each batch is committed."""
    if batch_size < 1:
        raise ValueError("batch_size must be at least 1")
    done = []
    for target in columns:
        progress = _rotate_column(db, cipher, target.column,
                                  ColumnProgress(target.name, _count(db, target.column)),
                                  batch_size, on_batch)
        done.append(progress)
    return RotationSummary(done)


def _count(db: Database, column: Column) -> int:
    with db.core_reading() as connection:
        return connection.scalar(select(func.count()).where(column.is_not(None))) or 0


def _rotate_column(db: Database, cipher: CredentialCipher, column: Column,
                   progress: ColumnProgress, batch_size: int,
                   on_batch: Callable[[ColumnProgress], None]) -> ColumnProgress:
    ids = column.table.c.id
    next_batch = (select(ids, column)
                  .where(ids > bindparam("after"), column.is_not(None))
                  .order_by(ids).limit(bindparam("size")))
    after = 0  # every id is positive (autoincrement)
    while True:
        with db.core_reading() as connection:
            batch = [(row_id, token) for row_id, token in
                     connection.execute(next_batch, {"after": after, "size": batch_size})]
        if not batch:
            return progress
        after = batch[-1][0]
        progress.checked += len(batch)
        _rotate_batch(db, cipher, column, batch, progress)
        on_batch(progress)


def _rotate_batch(db: Database, cipher: CredentialCipher, column: Column,
                  batch: list[tuple[int, str]], progress: ColumnProgress) -> None:
    ids = column.table.c.id
    # "old_token"/"new_token": in an UPDATE, a bind named after a column of its table is reserved.
    fenced = (update(column.table)
              .where(ids == bindparam("row_id"), column == bindparam("old_token"))
              .values({column.name: bindparam("new_token")}))
    reread = select(ids, column).where(ids.in_(bindparam("row_ids", expanding=True)),
                                       column.is_not(None))
    pending = batch
    for round_no in range(_RACE_ROUNDS + 1):
        fresh = _reencrypt(cipher, pending, progress)
        if not fresh:
            return
        if round_no == _RACE_ROUNDS:
            progress.unsettled += len(fresh)
            return
        lost = []
        with db.core_transaction() as connection:
            for row_id, old, new in fresh:
                if not connection.execute(fenced, {"row_id": row_id, "old_token": old,
                                                   "new_token": new}).rowcount:
                    lost.append(row_id)
        progress.rotated += len(fresh) - len(lost)
        if not lost:
            return
        # Someone changed these rows after our read, and their change stands. Look again: a
        # new token may still be under an older key (written by a process not yet given the
        # new one); a row deleted or cleared meanwhile drops out.
        with db.core_reading() as connection:
            pending = [(row_id, token) for row_id, token in
                       connection.execute(reread, {"row_ids": lost})]
        progress.vanished += len(lost) - len(pending)


def _reencrypt(cipher: CredentialCipher, rows: list[tuple[int, str]],
               progress: ColumnProgress) -> list[tuple[int, str, str]]:
    """(id, old token, new token) for each row not yet under the first key."""
    fresh = []
    for row_id, token in rows:
        if cipher.is_current(token):
            progress.current += 1
            continue
        try:
            fresh.append((row_id, token, cipher.rotate(token)))
        except CredentialError:
            progress.failed += 1
            if len(progress.failed_ids) < MAX_FAILED_IDS:
                progress.failed_ids.append(row_id)
    return fresh
