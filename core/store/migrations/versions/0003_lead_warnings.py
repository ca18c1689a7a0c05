"""lead warnings: what was repaired to read a lead's message

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-24 18:40:00
"""
from alembic import op
import sqlalchemy as sa


revision = '0003'
down_revision = '0002'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('leads') as batch:
        batch.add_column(sa.Column('warnings', sa.JSON(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('leads') as batch:
        batch.drop_column('warnings')
