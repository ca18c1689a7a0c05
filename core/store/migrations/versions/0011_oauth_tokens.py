"""OAuth2 tokens: one row per sign-in (a user, a client, a scope), its
tokens encrypted, shared by every worker; a refresh claimed by one worker at
a time; the provider's last refusal kept for `auth status` and `check`

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-06 11:00:00
"""
from alembic import op
import sqlalchemy as sa

from leadtap.core.store.db import UTCDateTime


revision = '0011'
down_revision = '0010'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        'oauth_tokens',
        sa.Column('credential', sa.String(length=64), primary_key=True),
        sa.Column('username', sa.String(length=320), nullable=False),
        sa.Column('grant_type', sa.String(length=40), nullable=False),
        sa.Column('refresh_token', sa.LargeBinary(), nullable=True),
        sa.Column('access_token', sa.LargeBinary(), nullable=True),
        sa.Column('expires_at', UTCDateTime(), nullable=True),
        sa.Column('refreshed_at', UTCDateTime(), nullable=True),
        sa.Column('refreshes', sa.Integer(), nullable=False, server_default='0'),
        sa.Column('claimed_by', sa.String(length=200), nullable=True),
        sa.Column('claimed_until', UTCDateTime(), nullable=True),
        sa.Column('error', sa.Text(), nullable=True),
        sa.Column('error_at', UTCDateTime(), nullable=True),
        sa.Column('attention', sa.Boolean(), nullable=False, server_default=sa.false()),
        sa.Column('signed_in_at', UTCDateTime(), nullable=True),
    )


def downgrade() -> None:
    op.drop_table('oauth_tokens')
