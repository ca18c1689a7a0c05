"""lead lifecycle: activity times, snoozes, automation stop, follow-ups, tasks

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-24 19:00:00
"""
from alembic import op
import sqlalchemy as sa
import leadtap.core.store.db


revision = '0004'
down_revision = '0003'
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Plain ADD COLUMNs: on SQLite a batch rebuild of `leads` would drop the
    # table that activities and opportunities reference, which foreign keys refuse.
    op.add_column('leads', sa.Column('last_activity_at', leadtap.core.store.db.UTCDateTime(), nullable=True))
    op.add_column('leads', sa.Column('last_outreach_at', leadtap.core.store.db.UTCDateTime(), nullable=True))
    op.add_column('leads', sa.Column('snoozed_until', leadtap.core.store.db.UTCDateTime(), nullable=True))
    op.add_column('leads', sa.Column('automation_stopped', sa.Boolean(), nullable=False, server_default=sa.false()))
    if op.get_bind().dialect.name == 'sqlite':
        op.execute('ALTER TABLE leads ADD COLUMN follow_up_of INTEGER REFERENCES leads (id)')
    else:
        op.add_column('leads', sa.Column('follow_up_of', sa.Integer(), nullable=True))
        op.create_foreign_key('fk_leads_follow_up_of', 'leads', 'leads', ['follow_up_of'], ['id'])
    op.create_table('tasks',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('lead_id', sa.Integer(), nullable=False),
        sa.Column('owner_id', sa.Integer(), nullable=True),
        sa.Column('title', sa.String(length=500), nullable=False),
        sa.Column('due_at', leadtap.core.store.db.UTCDateTime(), nullable=False),
        sa.Column('state', sa.String(length=20), nullable=False),
        sa.Column('created_at', leadtap.core.store.db.UTCDateTime(), nullable=False),
        sa.Column('closed_at', leadtap.core.store.db.UTCDateTime(), nullable=True),
        sa.Column('closed_by', sa.String(length=320), nullable=True),
        sa.ForeignKeyConstraint(['lead_id'], ['leads.id']),
        sa.ForeignKeyConstraint(['owner_id'], ['owners.id']),
        sa.PrimaryKeyConstraint('id'),
    )
    op.create_index('ix_tasks_lead_id', 'tasks', ['lead_id'])
    op.create_index('ix_tasks_state_due', 'tasks', ['state', 'due_at'])


def downgrade() -> None:
    op.drop_index('ix_tasks_state_due', table_name='tasks')
    op.drop_index('ix_tasks_lead_id', table_name='tasks')
    op.drop_table('tasks')
    with op.batch_alter_table('leads') as batch:
        batch.drop_constraint('fk_leads_follow_up_of', type_='foreignkey')
        for column in ('follow_up_of', 'automation_stopped', 'snoozed_until', 'last_outreach_at', 'last_activity_at'):
            batch.drop_column(column)
