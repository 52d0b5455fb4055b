"""OAuth2 browser consent: the states a callback must bring back

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-11 10:00:00
"""

import sqlalchemy as sa
from alembic import op

from app.db import UTCDateTime

revision = '0008'
down_revision = '0007'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        'oauth_consents',
        sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), primary_key=True),
        sa.Column('state_hash', sa.String(64), nullable=False, unique=True),
        sa.Column('team_id', sa.Integer(), sa.ForeignKey('teams.id', ondelete='CASCADE'),
                  nullable=False),
        sa.Column('provider', sa.String(16), nullable=False),
        sa.Column('email', sa.String(320), nullable=True),
        sa.Column('redirect_url', sa.Text(), nullable=False),
        sa.Column('server', sa.JSON(), nullable=True),
        sa.Column('code_verifier', sa.Text(), nullable=False),
        sa.Column('created_at', UTCDateTime(), nullable=False),
        sa.Column('expires_at', UTCDateTime(), nullable=False),
        sa.Column('used_at', UTCDateTime(), nullable=True),
    )
    op.create_index('ix_oauth_consents_team_id', 'oauth_consents', ['team_id'])


def downgrade() -> None:
    op.drop_index('ix_oauth_consents_team_id', table_name='oauth_consents')
    op.drop_table('oauth_consents')
