"""Errors raised by the ingest."""


class IngestError(Exception):
    """A file-level problem that stops the load of an as-of date.

    The message names the file and, where it applies, the line and column.
    """
