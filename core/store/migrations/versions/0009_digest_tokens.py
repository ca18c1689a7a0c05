"""commands by reply: the leads each digest listed, under its token; a
reply's content key (the same reply with headers added runs once)

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-06 08:30:00
"""
from alembic import op
import sqlalchemy as sa
import leadtap.core.store.db


revision = '0009'
down_revision = '0008'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('digest_tokens',
        sa.Column('mac', sa.String(length=32), nullable=False),
        sa.Column('recipient', sa.String(length=320), nullable=False),
        sa.Column('lead_ids', sa.JSON(), nullable=False),
        sa.Column('issued_at', leadtap.core.store.db.UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint('mac'),
    )
    op.create_index('ix_digest_tokens_issued_at', 'digest_tokens', ['issued_at'])
    with op.batch_alter_table('command_replies') as batch:
        batch.add_column(sa.Column('content_key', sa.String(length=64), nullable=True))
        batch.create_unique_constraint('uq_command_replies_content_key', ['content_key'])


def downgrade() -> None:
    with op.batch_alter_table('command_replies') as batch:
        batch.drop_constraint('uq_command_replies_content_key', type_='unique')
        batch.drop_column('content_key')
    op.drop_index('ix_digest_tokens_issued_at', table_name='digest_tokens')
    op.drop_table('digest_tokens')
