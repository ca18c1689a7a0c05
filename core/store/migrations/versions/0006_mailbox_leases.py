"""mailbox leases: several workers split the mailboxes

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-24 21:00:00
"""
from alembic import op
import sqlalchemy as sa
import leadtap.core.store.db


revision = '0006'
down_revision = '0005'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('mailbox_leases',
        sa.Column('mailbox', sa.String(length=200), nullable=False),
        sa.Column('holder', sa.String(length=200), nullable=False),
        sa.Column('expires_at', leadtap.core.store.db.UTCDateTime(), nullable=False),
        sa.Column('acquired_at', leadtap.core.store.db.UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint('mailbox'),
    )
    op.create_table('workers',
        sa.Column('id', sa.String(length=200), nullable=False),
        sa.Column('seen_at', leadtap.core.store.db.UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint('id'),
    )


def downgrade() -> None:
    op.drop_table('workers')
    op.drop_table('mailbox_leases')
