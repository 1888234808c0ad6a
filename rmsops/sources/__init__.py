"""Data access: AWS and PostgreSQL reads that checks judge."""
