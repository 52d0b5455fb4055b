"""Deleted accounts are remembered for a while, so a connect submitted before the DELETE
cannot bring the account back

Revision ID: 0010
Revises: 0009
Create Date: 2026-11-30 12:00:00
"""

import sqlalchemy as sa
from alembic import op

from app.db import UTCDateTime

revision = '0010'
down_revision = '0009'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        'account_deletions',
        sa.Column('team_id', sa.Integer(), sa.ForeignKey('teams.id', ondelete='CASCADE'),
                  primary_key=True),
        sa.Column('email', sa.String(320), primary_key=True),
        sa.Column('deleted_at', UTCDateTime(), nullable=False),
    )
    op.create_index('ix_account_deletions_deleted_at', 'account_deletions', ['deleted_at'])


def downgrade() -> None:
    op.drop_index('ix_account_deletions_deleted_at', table_name='account_deletions')
    op.drop_table('account_deletions')
