"""The film record (fields, checks, merge rule) and the store that keeps films (SQLAlchemy)."""
