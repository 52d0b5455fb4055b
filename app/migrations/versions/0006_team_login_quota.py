"""Team login quota: until when a job's rows wait for it

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-03 10:00:00
"""

import sqlalchemy as sa
from alembic import op

from app.db import UTCDateTime

revision = '0006'
down_revision = '0005'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('connect_jobs') as batch_op:
        batch_op.add_column(sa.Column('quota_wait_until', UTCDateTime(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('connect_jobs') as batch_op:
        batch_op.drop_column('quota_wait_until')
