"""deals: stage fields and times, staleness warnings, onboarding

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-24 22:30:00
"""
from alembic import op
import sqlalchemy as sa
import leadtap.core.store.db


revision = '0007'
down_revision = '0006'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('opportunities') as batch:
        batch.add_column(sa.Column('fields', sa.JSON(), nullable=True))
        batch.add_column(sa.Column('stage_changed_at', leadtap.core.store.db.UTCDateTime(), nullable=True))
        batch.add_column(sa.Column('closed_at', leadtap.core.store.db.UTCDateTime(), nullable=True))
        batch.add_column(sa.Column('lost_reason', sa.String(length=200), nullable=True))
        batch.add_column(sa.Column('warned_for', leadtap.core.store.db.UTCDateTime(), nullable=True))
        batch.add_column(sa.Column('warned_at', leadtap.core.store.db.UTCDateTime(), nullable=True))
    # A deal made before this release entered its stage at its lead's last stage move, or when it was made.
    op.execute("UPDATE opportunities SET fields = '{}', stage_changed_at = COALESCE((SELECT max(activities.at) "
               "FROM activities WHERE activities.lead_id = opportunities.lead_id AND activities.kind = 'stage'), "
               "created_at)")
    with op.batch_alter_table('opportunities') as batch:
        batch.alter_column('fields', existing_type=sa.JSON(), nullable=False)
        batch.alter_column('stage_changed_at', existing_type=leadtap.core.store.db.UTCDateTime(), nullable=False)
        batch.create_index('ix_opportunities_stage_changed', ['stage', 'stage_changed_at'])
        batch.create_index('ix_opportunities_created', ['created_at'])
    op.create_table('onboardings',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('opportunity_id', sa.Integer(), nullable=False),
        sa.Column('lead_id', sa.Integer(), nullable=False),
        sa.Column('owner_id', sa.Integer(), nullable=True),
        sa.Column('state', sa.String(length=20), nullable=False),
        sa.Column('created_at', leadtap.core.store.db.UTCDateTime(), nullable=False),
        sa.Column('done_at', leadtap.core.store.db.UTCDateTime(), nullable=True),
        sa.ForeignKeyConstraint(['opportunity_id'], ['opportunities.id']),
        sa.ForeignKeyConstraint(['lead_id'], ['leads.id']),
        sa.ForeignKeyConstraint(['owner_id'], ['owners.id']),
        sa.PrimaryKeyConstraint('id'),
        sa.UniqueConstraint('opportunity_id'),
    )
    op.create_index('ix_onboardings_lead_id', 'onboardings', ['lead_id'])
    op.create_index('ix_onboardings_owner_id', 'onboardings', ['owner_id'])
    with op.batch_alter_table('tasks') as batch:
        batch.add_column(sa.Column('onboarding_id', sa.Integer(), nullable=True))
        batch.create_foreign_key('fk_tasks_onboarding_id', 'onboardings', ['onboarding_id'], ['id'])
        batch.create_index('ix_tasks_onboarding_id', ['onboarding_id'])


def downgrade() -> None:
    with op.batch_alter_table('tasks') as batch:
        batch.drop_index('ix_tasks_onboarding_id')
        batch.drop_constraint('fk_tasks_onboarding_id', type_='foreignkey')
        batch.drop_column('onboarding_id')
    op.drop_index('ix_onboardings_owner_id', table_name='onboardings')
    op.drop_index('ix_onboardings_lead_id', table_name='onboardings')
    op.drop_table('onboardings')
    with op.batch_alter_table('opportunities') as batch:
        batch.drop_index('ix_opportunities_created')
        batch.drop_index('ix_opportunities_stage_changed')
        for column in ('warned_at', 'warned_for', 'lost_reason', 'closed_at', 'stage_changed_at', 'fields'):
            batch.drop_column(column)
