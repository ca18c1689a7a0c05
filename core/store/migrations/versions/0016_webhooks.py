"""webhooks: the events owed to each endpoint, sent through the outbox; the
endpoints that answered 410 Gone

Revision ID: 0016
Revises: 0015
Create Date: 2026-12-06 17:05:00
"""
from alembic import op
import sqlalchemy as sa

from leadtap.core.store.db import UTCDateTime


revision = '0016'
down_revision = '0015'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        'webhook_deliveries',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('endpoint', sa.String(length=100), nullable=False),
        sa.Column('event', sa.String(length=50), nullable=False),
        sa.Column('lead_id', sa.Integer(), nullable=True),
        sa.Column('webhook_id', sa.String(length=64), nullable=False),
        sa.Column('payload', sa.Text(), nullable=False),
        sa.Column('answer', sa.Text(), nullable=True),
        sa.Column('state', sa.String(length=20), nullable=False),
        sa.Column('token', sa.String(length=32), nullable=True),
        sa.Column('claimed_at', UTCDateTime(), nullable=True),
        sa.Column('attempts', sa.Integer(), nullable=False),
        sa.Column('next_attempt_at', UTCDateTime(), nullable=False),
        sa.Column('created_at', UTCDateTime(), nullable=False),
        sa.Column('sent_at', UTCDateTime(), nullable=True),
        sa.Column('last_error', sa.Text(), nullable=True),
        sa.ForeignKeyConstraint(['lead_id'], ['leads.id']),
        sa.PrimaryKeyConstraint('id'),
        sa.UniqueConstraint('webhook_id'),
    )
    op.create_index('ix_webhook_deliveries_lead_id', 'webhook_deliveries', ['lead_id'])
    op.create_index('ix_webhook_deliveries_state_next', 'webhook_deliveries', ['state', 'next_attempt_at'])
    op.create_index('ix_webhook_deliveries_endpoint_lead', 'webhook_deliveries', ['endpoint', 'lead_id', 'id'])
    op.create_table(
        'webhook_endpoints',
        sa.Column('name', sa.String(length=100), nullable=False),
        sa.Column('url', sa.Text(), nullable=False),
        sa.Column('disabled_at', UTCDateTime(), nullable=False),
        sa.Column('reason', sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint('name'),
    )


def downgrade() -> None:
    op.drop_table('webhook_endpoints')
    op.drop_index('ix_webhook_deliveries_endpoint_lead', table_name='webhook_deliveries')
    op.drop_index('ix_webhook_deliveries_state_next', table_name='webhook_deliveries')
    op.drop_index('ix_webhook_deliveries_lead_id', table_name='webhook_deliveries')
    op.drop_table('webhook_deliveries')
