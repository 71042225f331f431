"""How the dashboard shows values: relative times (UTC on hover), durations, JSON, rates.

Jinja filters and globals; the templates escape every value (autoescape), these only format.
"""

from __future__ import annotations

import json
from datetime import datetime, timezone
from typing import Any

from jinja2 import Environment


def now() -> datetime:
    return datetime.now(timezone.utc)


def utc(value: datetime | None) -> str:
    if value is None:
        return ""
    return value.astimezone(timezone.utc).strftime("%Y-%m-%d %H:%M:%S.%f")[:-3] + " UTC"


def span(seconds: float) -> str:
    """3 s, 4 min, 2 h 5 min, 3 d."""
    seconds = abs(seconds)
    if seconds < 1:
        return f"{seconds * 1000:.0f} ms"
    if seconds < 60:
        return f"{seconds:.1f} s" if seconds < 10 else f"{seconds:.0f} s"
    if seconds < 3600:
        return f"{seconds // 60:.0f} min"
    if seconds < 86400:
        return f"{seconds // 3600:.0f} h {seconds % 3600 // 60:.0f} min"
    return f"{seconds // 86400:.0f} d"


def relative(value: datetime | None) -> str:
    if value is None:
        return "—"
    delta = (now() - value).total_seconds()
    return f"{span(delta)} ago" if delta >= 0 else f"in {span(delta)}"


def ms(value: float | int | None) -> str:
    return "—" if value is None else span(float(value) / 1000.0)


def rate(interval_ms: float) -> str:
    """An interval between calls as the rate people configure: 1/s, 60/min."""
    if interval_ms <= 0:
        return "unlimited"
    per_second = 1000.0 / interval_ms
    if per_second >= 1:
        return f"{per_second:g}/s"
    return f"{per_second * 60:g}/min" if per_second * 60 >= 1 else f"{per_second * 3600:g}/h"


def pretty(value: Any) -> str:
    return json.dumps(value, indent=2, sort_keys=True, default=str, ensure_ascii=False)


def install(env: Environment) -> None:
    env.filters.update(utc=utc, relative=relative, ms=ms, rate=rate, pretty=pretty, span=span)
    env.globals.update(now=now)
