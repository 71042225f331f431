"""The one error base of the library. Every error pgjobs raises on purpose derives from it, and the
CLI prints any of them as one line with exit code 2.

    PgjobsError
    ├── ConfigError            a bad setting or --app (pgjobs.app, pgjobs.settings)
    ├── DatabaseError          the database cannot be reached or started (pgjobs.database)
    ├── MigrationError         the schema cannot be, or is not, up to date (pgjobs.migrations)
    │   └── NotMigrated
    └── QueueError             a queue operation was refused (pgjobs.queue.errors)
        ├── PayloadError, JobNotFound, LeaseLost, UnknownKind
"""

from __future__ import annotations

from pydantic import ValidationError


class PgjobsError(Exception):
    """Base of every error pgjobs raises on purpose; its message is one line a user can act on."""


class ConfigError(PgjobsError):
    """A setting, an --app reference or an app declaration is wrong; the message says which."""


def validation_message(exc: ValidationError, *, count_more: bool = False) -> str:
    """A pydantic error as one line: where (dotted, or "payload") and what; with `count_more`,
    how many other errors there were."""
    first = exc.errors()[0]
    where = ".".join(str(part) for part in first.get("loc", ())) or "payload"
    more = f" (+{exc.error_count() - 1} more)" if count_more and exc.error_count() > 1 else ""
    return f"{where}: {first.get('msg')}{more}"
