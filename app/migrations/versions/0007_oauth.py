"""OAuth2 accounts: each team's OAuth apps; an account's auth type and OAuth provider

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-10 10:00:00
"""

import sqlalchemy as sa
from alembic import op

from app.db import UTCDateTime

revision = '0007'
down_revision = '0006'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        'oauth_apps',
        sa.Column('id', sa.Integer(), primary_key=True),
        sa.Column('team_id', sa.Integer(), sa.ForeignKey('teams.id', ondelete='CASCADE'),
                  nullable=False),
        sa.Column('provider', sa.String(16), nullable=False),
        sa.Column('client_id', sa.String(512), nullable=False),
        sa.Column('client_secret', sa.Text(), nullable=False),
        sa.Column('tenant', sa.String(200), nullable=True),
        sa.Column('token_url', sa.Text(), nullable=False),
        sa.Column('authorize_url', sa.Text(), nullable=False),
        sa.Column('created_at', UTCDateTime(), nullable=False),
        sa.Column('updated_at', UTCDateTime(), nullable=False),
        sa.UniqueConstraint('team_id', 'provider', name='uq_oauth_apps_team_provider'),
    )
    op.create_index('ix_oauth_apps_team_id', 'oauth_apps', ['team_id'])
    with op.batch_alter_table('email_accounts') as batch_op:
        batch_op.add_column(sa.Column('auth_type', sa.String(16), nullable=False,
                                      server_default='password'))
        batch_op.add_column(sa.Column('oauth2_provider', sa.String(16), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('email_accounts') as batch_op:
        batch_op.drop_column('oauth2_provider')
        batch_op.drop_column('auth_type')
    op.drop_index('ix_oauth_apps_team_id', table_name='oauth_apps')
    op.drop_table('oauth_apps')
