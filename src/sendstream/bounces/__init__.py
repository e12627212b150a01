"""Bounces, complaints and inbound mail: the MX, the IMAP mailbox, provider
webhooks, parsing and classification, and the actions they lead to."""
