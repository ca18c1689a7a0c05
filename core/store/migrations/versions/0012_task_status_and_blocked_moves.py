"""the status a task was made for (its tasks close when the lead leaves it),
and why automation could not move a lead (a required field missing)

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-06 13:40:00
"""
from alembic import op
import sqlalchemy as sa


revision = '0012'
down_revision = '0011'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('tasks') as batch:
        batch.add_column(sa.Column('status', sa.String(length=200), nullable=True))
    with op.batch_alter_table('leads') as batch:
        batch.add_column(sa.Column('blocked', sa.Text(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('leads') as batch:
        batch.drop_column('blocked')
    with op.batch_alter_table('tasks') as batch:
        batch.drop_column('status')
