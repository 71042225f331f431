"""Where the two halves meet: the registry of every job kind this installation runs."""

from __future__ import annotations

from pgjobs.queue import Registry, default_registry


def job_registry() -> Registry:
    """The built-in kinds plus the enrichment chain's."""
    return default_registry()
