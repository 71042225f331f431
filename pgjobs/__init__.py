"""pgjobs: a PostgreSQL job queue whose jobs commit their effects, audit row and children together."""

__version__ = "0.1.0"
