"""API key lifecycle: last used, revoked

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-02 10:00:00
"""

import sqlalchemy as sa
from alembic import op

from app.db import UTCDateTime

revision = '0005'
down_revision = '0004'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('api_keys') as batch_op:
        batch_op.add_column(sa.Column('last_used_at', UTCDateTime(), nullable=True))
        batch_op.add_column(sa.Column('revoked_at', UTCDateTime(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('api_keys') as batch_op:
        for column in ('revoked_at', 'last_used_at'):
            batch_op.drop_column(column)
