"""Data: reading tables, the schema, checks and the dataset fingerprint."""
