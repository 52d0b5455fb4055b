"""initial schema

Revision ID: 0001
Revises:
Create Date: 2026-11-23 09:00:56.296720
"""

import sqlalchemy as sa
from alembic import op

import app.db

revision = '0001'
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('teams',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('name', sa.String(length=200), nullable=False),
    sa.Column('created_at', app.db.UTCDateTime(), nullable=False),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('name')
    )
    op.create_table('api_keys',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('team_id', sa.Integer(), nullable=False),
    sa.Column('key_hash', sa.String(length=64), nullable=False),
    sa.Column('prefix', sa.String(length=16), nullable=False),
    sa.Column('created_at', app.db.UTCDateTime(), nullable=False),
    sa.ForeignKeyConstraint(['team_id'], ['teams.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('key_hash')
    )
    with op.batch_alter_table('api_keys', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_api_keys_team_id'), ['team_id'], unique=False)

    op.create_table('connect_jobs',
    sa.Column('id', sa.String(length=32), nullable=False),
    sa.Column('team_id', sa.Integer(), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('total', sa.Integer(), nullable=False),
    sa.Column('processed', sa.Integer(), nullable=False),
    sa.Column('succeeded', sa.Integer(), nullable=False),
    sa.Column('failed', sa.Integer(), nullable=False),
    sa.Column('invalid', sa.Integer(), nullable=False),
    sa.Column('ignored_columns', sa.JSON(), nullable=True),
    sa.Column('report_key', sa.String(length=400), nullable=True),
    sa.Column('error', sa.Text(), nullable=True),
    sa.Column('created_at', app.db.UTCDateTime(), nullable=False),
    sa.Column('started_at', app.db.UTCDateTime(), nullable=True),
    sa.Column('completed_at', app.db.UTCDateTime(), nullable=True),
    sa.Column('last_progress_at', app.db.UTCDateTime(), nullable=False),
    sa.ForeignKeyConstraint(['team_id'], ['teams.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('connect_jobs', schema=None) as batch_op:
        batch_op.create_index('ix_connect_jobs_status', ['status'], unique=False)
        batch_op.create_index(batch_op.f('ix_connect_jobs_team_id'), ['team_id'], unique=False)

    op.create_table('email_accounts',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('team_id', sa.Integer(), nullable=False),
    sa.Column('email', sa.String(length=320), nullable=False),
    sa.Column('provider', sa.String(length=32), nullable=False),
    sa.Column('from_first_name', sa.String(length=200), nullable=True),
    sa.Column('from_last_name', sa.String(length=200), nullable=True),
    sa.Column('from_name', sa.String(length=400), nullable=True),
    sa.Column('smtp_email', sa.String(length=320), nullable=False),
    sa.Column('smtp_username', sa.String(length=320), nullable=False),
    sa.Column('smtp_host', sa.String(length=253), nullable=False),
    sa.Column('smtp_port', sa.Integer(), nullable=False),
    sa.Column('smtp_encryption', sa.String(length=16), nullable=False),
    sa.Column('imap_email', sa.String(length=320), nullable=True),
    sa.Column('imap_username', sa.String(length=320), nullable=True),
    sa.Column('imap_host', sa.String(length=253), nullable=True),
    sa.Column('imap_port', sa.Integer(), nullable=True),
    sa.Column('imap_encryption', sa.String(length=16), nullable=True),
    sa.Column('credentials', sa.Text(), nullable=False),
    sa.Column('status', sa.SmallInteger(), nullable=False),
    sa.Column('smtp_result', sa.String(length=16), nullable=True),
    sa.Column('smtp_error_code', sa.String(length=64), nullable=True),
    sa.Column('smtp_error', sa.Text(), nullable=True),
    sa.Column('imap_result', sa.String(length=16), nullable=True),
    sa.Column('imap_error_code', sa.String(length=64), nullable=True),
    sa.Column('imap_error', sa.Text(), nullable=True),
    sa.Column('last_tested_at', app.db.UTCDateTime(), nullable=True),
    sa.Column('created_at', app.db.UTCDateTime(), nullable=False),
    sa.Column('updated_at', app.db.UTCDateTime(), nullable=False),
    sa.ForeignKeyConstraint(['team_id'], ['teams.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('team_id', 'email', name='uq_email_accounts_team_email')
    )
    with op.batch_alter_table('email_accounts', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_email_accounts_team_id'), ['team_id'], unique=False)

    op.create_table('connect_job_rows',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('job_id', sa.String(length=32), nullable=False),
    sa.Column('row_no', sa.Integer(), nullable=False),
    sa.Column('state', sa.String(length=16), nullable=False),
    sa.Column('email', sa.String(length=320), nullable=True),
    sa.Column('settings', sa.JSON(), nullable=True),
    sa.Column('credentials', sa.Text(), nullable=True),
    sa.Column('error_code', sa.String(length=64), nullable=True),
    sa.Column('field_errors', sa.JSON(), nullable=True),
    sa.Column('lease_expires_at', app.db.UTCDateTime(), nullable=True),
    sa.Column('attempts', sa.Integer(), nullable=False),
    sa.Column('account_id', sa.BigInteger(), nullable=True),
    sa.Column('account_status', sa.SmallInteger(), nullable=True),
    sa.Column('smtp_result', sa.String(length=16), nullable=True),
    sa.Column('smtp_error_code', sa.String(length=64), nullable=True),
    sa.Column('smtp_error', sa.Text(), nullable=True),
    sa.Column('imap_result', sa.String(length=16), nullable=True),
    sa.Column('imap_error_code', sa.String(length=64), nullable=True),
    sa.Column('imap_error', sa.Text(), nullable=True),
    sa.Column('duration_ms', sa.Integer(), nullable=True),
    sa.Column('finished_at', app.db.UTCDateTime(), nullable=True),
    sa.ForeignKeyConstraint(['job_id'], ['connect_jobs.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('job_id', 'row_no', name='uq_connect_job_rows_job_row')
    )
    with op.batch_alter_table('connect_job_rows', schema=None) as batch_op:
        batch_op.create_index('ix_connect_job_rows_state_lease', ['state', 'lease_expires_at'], unique=False)



def downgrade() -> None:
    with op.batch_alter_table('connect_job_rows', schema=None) as batch_op:
        batch_op.drop_index('ix_connect_job_rows_state_lease')

    op.drop_table('connect_job_rows')
    with op.batch_alter_table('email_accounts', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_email_accounts_team_id'))

    op.drop_table('email_accounts')
    with op.batch_alter_table('connect_jobs', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_connect_jobs_team_id'))
        batch_op.drop_index('ix_connect_jobs_status')

    op.drop_table('connect_jobs')
    with op.batch_alter_table('api_keys', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_api_keys_team_id'))

    op.drop_table('api_keys')
    op.drop_table('teams')
