"""Signing in to mail servers with OAuth2: the token endpoint's client, the
tokens' encryption at rest, and the token source the IMAP and SMTP adapters
ask for an access token."""
