"""an owner away (a holiday): out of the rotation from away_since until
away_until (none: until they are back); a reminder whose recipient's server
refused it for now is kept, failed, with when it first failed (the ladder
climbs past a mailbox that stays full)

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-06 14:20:00
"""
from alembic import op
import sqlalchemy as sa

from leadtap.core.store.db import UTCDateTime


revision = '0013'
down_revision = '0012'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('owners') as batch:
        batch.add_column(sa.Column('away_since', UTCDateTime(), nullable=True))
        batch.add_column(sa.Column('away_until', UTCDateTime(), nullable=True))
    with op.batch_alter_table('reminders') as batch:
        batch.add_column(sa.Column('first_failed_at', UTCDateTime(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('reminders') as batch:
        batch.drop_column('first_failed_at')
    with op.batch_alter_table('owners') as batch:
        batch.drop_column('away_until')
        batch.drop_column('away_since')
