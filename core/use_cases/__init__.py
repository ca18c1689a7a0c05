"""The use cases: each change a user or the mail makes, inside a caller's transaction,
by the rules — and the views the commands show."""
