"""the folder a mailbox's place by UID was kept for: a sent mailbox pointed
at another folder starts at its newest message, as a new one does

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-06 09:15:00
"""
from alembic import op
import sqlalchemy as sa


revision = '0010'
down_revision = '0009'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('mailbox_state') as batch:
        batch.add_column(sa.Column('folder', sa.String(length=1000), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('mailbox_state') as batch:
        batch.drop_column('folder')
