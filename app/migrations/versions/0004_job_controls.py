"""job controls: waiting rows, re-test fencing, cancel, retry, idempotency, webhooks

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-29 14:50:00
"""

import sqlalchemy as sa
from alembic import op

from app.db import UTCDateTime

revision = '0004'
down_revision = '0003'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('teams') as batch_op:
        batch_op.add_column(sa.Column('callback_url', sa.Text(), nullable=True))
        batch_op.add_column(sa.Column('webhook_secret', sa.Text(), nullable=True))
    with op.batch_alter_table('email_accounts') as batch_op:
        batch_op.add_column(sa.Column('settings_version', sa.Integer(), server_default='1', nullable=False))
    with op.batch_alter_table('connect_jobs') as batch_op:
        batch_op.add_column(sa.Column('kind', sa.String(length=16), server_default='connect', nullable=False))
        batch_op.add_column(sa.Column('retry_of', sa.String(length=32), nullable=True))
        batch_op.add_column(sa.Column('cancelled', sa.Integer(), server_default='0', nullable=False))
        batch_op.add_column(sa.Column('failed_rows_key', sa.String(length=400), nullable=True))
        batch_op.add_column(sa.Column('files_expired_at', UTCDateTime(), nullable=True))
        batch_op.add_column(sa.Column('cancel_requested_at', UTCDateTime(), nullable=True))
        batch_op.add_column(sa.Column('callback_url', sa.Text(), nullable=True))
        batch_op.add_column(sa.Column('webhook_state', sa.String(length=16), nullable=True))
        batch_op.add_column(sa.Column('webhook_attempts', sa.Integer(), server_default='0', nullable=False))
        batch_op.add_column(sa.Column('webhook_error', sa.Text(), nullable=True))
        batch_op.add_column(sa.Column('webhook_delivered_at', UTCDateTime(), nullable=True))
        batch_op.create_index('ix_connect_jobs_team_created', ['team_id', 'created_at'])
    with op.batch_alter_table('connect_job_rows') as batch_op:
        batch_op.add_column(sa.Column('source', sa.JSON(), nullable=True))
        batch_op.add_column(sa.Column('wait_until', UTCDateTime(), nullable=True))
        batch_op.add_column(sa.Column('claims', sa.Integer(), server_default='0', nullable=False))
        batch_op.create_index('ix_connect_job_rows_state_wait', ['state', 'wait_until'])
    op.create_table(
        'job_error_counts',
        sa.Column('job_id', sa.String(length=32), nullable=False),
        sa.Column('code', sa.String(length=64), nullable=False),
        sa.Column('count', sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(['job_id'], ['connect_jobs.id'], ondelete='CASCADE'),
        sa.PrimaryKeyConstraint('job_id', 'code'),
    )
    op.create_table(
        'idempotency_keys',
        sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
        sa.Column('team_id', sa.Integer(), nullable=False),
        sa.Column('key', sa.String(length=255), nullable=False),
        sa.Column('request_hash', sa.String(length=64), nullable=False),
        sa.Column('job_id', sa.String(length=32), nullable=False),
        sa.Column('created_at', UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(['team_id'], ['teams.id'], ondelete='CASCADE'),
        sa.ForeignKeyConstraint(['job_id'], ['connect_jobs.id'], ondelete='CASCADE'),
        sa.PrimaryKeyConstraint('id'),
        sa.UniqueConstraint('team_id', 'key', name='uq_idempotency_keys_team_key'),
    )
    op.create_index('ix_idempotency_keys_created_at', 'idempotency_keys', ['created_at'])


def downgrade() -> None:
    op.drop_index('ix_idempotency_keys_created_at', table_name='idempotency_keys')
    op.drop_table('idempotency_keys')
    op.drop_table('job_error_counts')
    with op.batch_alter_table('connect_job_rows') as batch_op:
        batch_op.drop_index('ix_connect_job_rows_state_wait')
        for column in ('claims', 'wait_until', 'source'):
            batch_op.drop_column(column)
    with op.batch_alter_table('connect_jobs') as batch_op:
        batch_op.drop_index('ix_connect_jobs_team_created')
        for column in ('webhook_delivered_at', 'webhook_error', 'webhook_attempts',
                       'webhook_state', 'callback_url', 'cancel_requested_at',
                       'files_expired_at', 'failed_rows_key', 'cancelled', 'retry_of', 'kind'):
            batch_op.drop_column(column)
    with op.batch_alter_table('email_accounts') as batch_op:
        batch_op.drop_column('settings_version')
    with op.batch_alter_table('teams') as batch_op:
        batch_op.drop_column('webhook_secret')
        batch_op.drop_column('callback_url')
