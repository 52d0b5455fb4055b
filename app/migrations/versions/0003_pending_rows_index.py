"""index for taking a job's next pending row

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-23 11:55:00
"""

from alembic import op

revision = '0003'
down_revision = '0002'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index('ix_connect_job_rows_job_state_row', 'connect_job_rows',
                    ['job_id', 'state', 'row_no'])


def downgrade() -> None:
    op.drop_index('ix_connect_job_rows_job_state_row', table_name='connect_job_rows')
