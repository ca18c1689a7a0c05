"""commands by reply: the replies and their confirmations

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-24 23:00:00
"""
from alembic import op
import sqlalchemy as sa
import leadtap.core.store.db


revision = '0008'
down_revision = '0007'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('command_replies',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('identity', sa.String(length=64), nullable=False),
        sa.Column('mailbox', sa.String(length=200), nullable=False),
        sa.Column('message_id', sa.String(length=998), nullable=True),
        sa.Column('references', sa.JSON(), nullable=False),
        sa.Column('sender', sa.String(length=320), nullable=False),
        sa.Column('subject', sa.String(length=998), nullable=True),
        sa.Column('lead_id', sa.Integer(), nullable=True),
        sa.Column('digest', sa.Boolean(), nullable=False),
        sa.Column('results', sa.JSON(), nullable=False),
        sa.Column('received_at', leadtap.core.store.db.UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(['lead_id'], ['leads.id']),
        sa.PrimaryKeyConstraint('id'),
        sa.UniqueConstraint('identity'),
    )
    op.create_index('ix_command_replies_lead_id', 'command_replies', ['lead_id'])
    # Nothing references `notifications`, so SQLite may rebuild it for the new key.
    with op.batch_alter_table('notifications') as batch:
        batch.add_column(sa.Column('reply_id', sa.Integer(), nullable=False, server_default='0'))
        batch.alter_column('lead_id', existing_type=sa.Integer(), nullable=True)
        batch.drop_constraint('uq_notifications_once', type_='unique')
        batch.create_unique_constraint('uq_notifications_once', ['lead_id', 'recipient', 'kind', 'reply_id'])


def downgrade() -> None:
    op.execute("DELETE FROM notifications WHERE kind = 'confirmation'")
    with op.batch_alter_table('notifications') as batch:
        batch.drop_constraint('uq_notifications_once', type_='unique')
        batch.create_unique_constraint('uq_notifications_once', ['lead_id', 'recipient', 'kind'])
        batch.alter_column('lead_id', existing_type=sa.Integer(), nullable=False)
        batch.drop_column('reply_id')
    op.drop_index('ix_command_replies_lead_id', table_name='command_replies')
    op.drop_table('command_replies')
