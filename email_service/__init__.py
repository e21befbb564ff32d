"""The email service: an outbox of order emails, rendered from templates and sent over SMTP or logged."""
