"""sending settings

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-23 10:10:30.361925
"""

import sqlalchemy as sa
from alembic import op

revision = '0002'
down_revision = '0001'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('email_accounts', schema=None) as batch_op:
        batch_op.add_column(sa.Column('smtp_only', sa.Boolean(), server_default=sa.false(), nullable=False))
        batch_op.add_column(sa.Column('suspended', sa.Boolean(), server_default=sa.false(), nullable=False))
        batch_op.add_column(sa.Column('max_email_per_day', sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column('min_delay_minutes', sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column('warmup_enabled', sa.Boolean(), server_default=sa.false(), nullable=False))
        batch_op.add_column(sa.Column('warmup_per_day', sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column('warmup_daily_rampup', sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column('warmup_reply_rate', sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column('reply_to', sa.String(length=320), nullable=True))
        batch_op.add_column(sa.Column('bcc', sa.String(length=320), nullable=True))
        batch_op.add_column(sa.Column('signature', sa.Text(), nullable=True))
        batch_op.add_column(sa.Column('tags', sa.JSON(), nullable=True))

def downgrade() -> None:
    with op.batch_alter_table('email_accounts', schema=None) as batch_op:
        batch_op.drop_column('tags')
        batch_op.drop_column('signature')
        batch_op.drop_column('bcc')
        batch_op.drop_column('reply_to')
        batch_op.drop_column('warmup_reply_rate')
        batch_op.drop_column('warmup_daily_rampup')
        batch_op.drop_column('warmup_per_day')
        batch_op.drop_column('warmup_enabled')
        batch_op.drop_column('min_delay_minutes')
        batch_op.drop_column('max_email_per_day')
        batch_op.drop_column('suspended')
        batch_op.drop_column('smtp_only')

