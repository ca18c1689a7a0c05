"""new-lead notifications, task reminders, the assignment clock

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-24 20:30:00
"""
from alembic import op
import sqlalchemy as sa
import leadtap.core.store.db


revision = '0005'
down_revision = '0004'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column('leads', sa.Column('assigned_at', leadtap.core.store.db.UTCDateTime(), nullable=True))
    # Nothing references `reminders`, so SQLite may rebuild it for the new key.
    with op.batch_alter_table('reminders') as batch:
        batch.add_column(sa.Column('task_id', sa.Integer(), nullable=False, server_default='0'))
        batch.drop_constraint('uq_reminders_claim', type_='unique')
        batch.create_unique_constraint('uq_reminders_claim',
                                       ['lead_id', 'rule', 'stay_started_at', 'repeat', 'recipient', 'task_id'])
    op.create_table('notifications',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('lead_id', sa.Integer(), nullable=False),
        sa.Column('recipient', sa.String(length=320), nullable=False),
        sa.Column('kind', sa.String(length=50), nullable=False),
        sa.Column('state', sa.String(length=20), nullable=False),
        sa.Column('token', sa.String(length=32), nullable=True),
        sa.Column('claimed_at', leadtap.core.store.db.UTCDateTime(), nullable=True),
        sa.Column('attempts', sa.Integer(), nullable=False),
        sa.Column('next_attempt_at', leadtap.core.store.db.UTCDateTime(), nullable=False),
        sa.Column('created_at', leadtap.core.store.db.UTCDateTime(), nullable=False),
        sa.Column('sent_at', leadtap.core.store.db.UTCDateTime(), nullable=True),
        sa.Column('last_error', sa.Text(), nullable=True),
        sa.ForeignKeyConstraint(['lead_id'], ['leads.id']),
        sa.PrimaryKeyConstraint('id'),
        sa.UniqueConstraint('lead_id', 'recipient', 'kind', name='uq_notifications_once'),
    )
    op.create_index('ix_notifications_lead_id', 'notifications', ['lead_id'])
    op.create_index('ix_notifications_state_next', 'notifications', ['state', 'next_attempt_at'])


def downgrade() -> None:
    op.drop_index('ix_notifications_state_next', table_name='notifications')
    op.drop_index('ix_notifications_lead_id', table_name='notifications')
    op.drop_table('notifications')
    with op.batch_alter_table('reminders') as batch:
        batch.drop_constraint('uq_reminders_claim', type_='unique')
        batch.create_unique_constraint('uq_reminders_claim',
                                       ['lead_id', 'rule', 'stay_started_at', 'repeat', 'recipient'])
        batch.drop_column('task_id')
    with op.batch_alter_table('leads') as batch:
        batch.drop_column('assigned_at')
