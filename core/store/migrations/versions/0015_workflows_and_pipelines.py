"""stage workflows: each step owed to a lead's stay in a status (or its deal's
in a stage), run through
the outbox; the contacts' emails a workflow sent, at most one of a template
per contact in its period; several pipelines: a lead's pipeline (empty: the
default one — every lead so far)

Revision ID: 0015
Revises: 0014
Create Date: 2026-12-06 16:20:00
"""
from alembic import op
import sqlalchemy as sa

from leadtap.core.store.db import UTCDateTime


revision = '0015'
down_revision = '0014'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('leads') as batch:
        batch.add_column(sa.Column('pipeline', sa.String(length=100), nullable=True))
    op.create_table(
        'workflow_steps',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('lead_id', sa.Integer(), nullable=False),
        sa.Column('deal', sa.Boolean(), server_default=sa.false(), nullable=False),
        sa.Column('status', sa.String(length=200), nullable=False),
        sa.Column('entered_at', UTCDateTime(), nullable=False),
        sa.Column('step', sa.Integer(), nullable=False),
        sa.Column('kind', sa.String(length=20), nullable=False),
        sa.Column('fingerprint', sa.String(length=16), nullable=False),
        sa.Column('recipient', sa.String(length=320), nullable=True),
        sa.Column('message_id', sa.String(length=998), nullable=True),
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
        sa.UniqueConstraint('lead_id', 'deal', 'status', 'entered_at', 'step', name='uq_workflow_steps_once'),
    )
    op.create_index('ix_workflow_steps_lead_id', 'workflow_steps', ['lead_id'])
    op.create_index('ix_workflow_steps_state_next', 'workflow_steps', ['state', 'next_attempt_at'])
    op.create_table(
        'contact_emails',
        sa.Column('contact', sa.String(length=320), nullable=False),
        sa.Column('template', sa.String(length=100), nullable=False),
        sa.Column('step_id', sa.Integer(), nullable=False),
        sa.Column('sent_at', UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint('contact', 'template'),
    )


def downgrade() -> None:
    with op.batch_alter_table('leads') as batch:
        batch.drop_column('pipeline')
    op.drop_table('contact_emails')
    op.drop_index('ix_workflow_steps_state_next', table_name='workflow_steps')
    op.drop_index('ix_workflow_steps_lead_id', table_name='workflow_steps')
    op.drop_table('workflow_steps')
