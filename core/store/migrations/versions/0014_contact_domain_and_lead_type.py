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
    leads = sa.table('leads', sa.column('id', sa.Integer), sa.column('contact', sa.String),
                     sa.column('contact_domain', sa.String))
    connection = op.get_bind()
    rows = connection.execute(sa.select(leads.c.id, leads.c.contact).where(leads.c.contact.like('%@%'))).all()
    for start in range(0, len(rows), 1000):
        connection.execute(
            leads.update().where(leads.c.id == sa.bindparam('lead_id')).values(contact_domain=sa.bindparam('domain')),
            [{'lead_id': row.id, 'domain': row.contact.rsplit('@', 1)[1].lower()[:255]}
             for row in rows[start:start + 1000]])


def downgrade() -> None:
    with op.batch_alter_table('leads') as batch:
        batch.drop_column('type')
        batch.drop_index('ix_leads_contact_domain')
        batch.drop_column('contact_domain')
