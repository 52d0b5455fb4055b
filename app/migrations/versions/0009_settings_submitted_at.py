"""Accounts remember when their settings were submitted, so an older submission never
overwrites a newer one

Revision ID: 0009
Revises: 0008
Create Date: 2026-11-30 09:10:00
"""

import sqlalchemy as sa
from alembic import op

from app.db import UTCDateTime

revision = '0009'
down_revision = '0008'
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Null for accounts saved before: any submission may overwrite those, as before.
    op.add_column('email_accounts', sa.Column('settings_submitted_at', UTCDateTime(),
                                              nullable=True))


def downgrade() -> None:
    op.drop_column('email_accounts', 'settings_submitted_at')
