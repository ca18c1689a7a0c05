"""the contact's domain, indexed: a new contact at a company with an open
lead goes to that lead's owner ([assignment] company_owner); a lead's type
(HubSpot's lead type: [leads] types)

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-06 14:50:00
"""
from alembic import op
import sqlalchemy as sa


revision = '0014'
down_revision = '0013'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('leads') as batch:
        batch.add_column(sa.Column('contact_domain', sa.String(length=255), nullable=True))
        batch.create_index('ix_leads_contact_domain', ['contact_domain'])
        batch.add_column(sa.Column('type', sa.String(length=100), nullable=True))
    # one statement, no rows read into Python: an address has one "@" (leadtap's own check)
    position = "instr(contact, '@')" if op.get_bind().dialect.name == "sqlite" else "strpos(contact, '@')"
    op.execute(f"UPDATE leads SET contact_domain = NULLIF(substr(lower(substr(contact, {position} + 1)), 1, 255), '') "
               f"WHERE contact LIKE '%@%'")


def downgrade() -> None:
    with op.batch_alter_table('leads') as batch:
        batch.drop_column('type')
        batch.drop_index('ix_leads_contact_domain')
        batch.drop_column('contact_domain')
