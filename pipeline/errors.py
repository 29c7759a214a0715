"""Errors that reach the user as one clear line (the CLI prints them and exits non-zero)."""


class KadnError(Exception):
    """An error the user can act on; `kadn` prints it without a traceback."""


class RecordError(KadnError):
    """One field of one record is invalid."""

    def __init__(self, field: str, message: str):
        super().__init__(f"field '{field}': {message}")
        self.field = field
        self.message = message


class SchemaError(KadnError):
    """The database exists but was not written by this version of the schema."""
