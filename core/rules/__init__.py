"""The rules: plain code, no SQLAlchemy, no I/O, no clock — what a lead, a deal, a message
and a reply are, and what may happen to them. Tested without a server."""
