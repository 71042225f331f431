"""JSON text for payloads and audit metadata, via orjson, with the stdlib's exact semantics.

On a job's hot path JSON is encoded at enqueue, decoded when a handler reads its payload and
encoded again for the audit row's metadata: the stdlib takes 4-7 µs for each of those small
objects, orjson under 1. Where the two disagree, the stdlib's answer is kept:
- integers beyond 64 bits: orjson refuses to encode them and decodes them as floats (losing
  digits), so such texts go through the stdlib (jsonb keeps them exactly);
- NaN and infinities: orjson writes null; PostgreSQL's JSON has neither, so they raise as before.
"""

from __future__ import annotations

import json
import math
import re
from typing import Any, Callable

import orjson

_OPTIONS = orjson.OPT_NON_STR_KEYS  # {1: "x"} -> {"1": "x"}, as json.dumps does
# 19 digits in a row may be an integer beyond int64 (or a long fraction): decode those exactly.
_LONG_NUMBER = re.compile(r"\d{19}")


def dumps(obj: Any, *, default: Callable[[Any], Any] | None = None) -> str:
    """Compact JSON text of `obj`. Raises TypeError for what JSON cannot hold (ValueError for
    NaN/infinity); `default` converts unknown types, as in json.dumps."""
    try:
        data = orjson.dumps(obj, default=default, option=_OPTIONS)
    except TypeError:  # a >64-bit int, or a type only `default` or the stdlib knows
        return json.dumps(obj, default=default, separators=(",", ":"), allow_nan=False)
    if b"null" in data and _has_nonfinite(obj):
        raise ValueError("NaN and infinity are not JSON: PostgreSQL would refuse this value")
    return data.decode()


def loads(text: str | bytes) -> Any:
    if _LONG_NUMBER.search(text if isinstance(text, str) else text.decode()):
        return json.loads(text)
    return orjson.loads(text)


def _has_nonfinite(obj: Any) -> bool:
    if isinstance(obj, float):
        return not math.isfinite(obj)
    if isinstance(obj, dict):
        return any(_has_nonfinite(k) or _has_nonfinite(v) for k, v in obj.items())
    if isinstance(obj, (list, tuple)):
        return any(_has_nonfinite(v) for v in obj)
    return False
