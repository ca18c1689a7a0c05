"""Persistence: the tables, the engine and its migrations, and the queries and claims
over them (the ledger, the rotation, the outbox, reminder claims, mailbox leases)."""
