"""JSON text for payloads and audit metadata: encoded and decoded via orjson with the stdlib's exact
semantics, and payload text from outside (`parse_object`) checked for what PostgreSQL's jsonb refuses.

On a job's hot path JSON is encoded at enqueue, decoded when a handler reads its payload and
encoded again for the audit row's metadata: the stdlib takes 4-7 µs for each of those small
objects, orjson under 1. Where the two disagree, the stdlib's answer is kept:
- integers beyond 64 bits: orjson refuses to encode them and decodes them as floats (losing
  digits), so such texts go through the stdlib (jsonb keeps them exactly);
- NaN and infinities: orjson writes null; PostgreSQL's JSON has neither, so they raise as before.

`parse_object` is the one gate for payload text a person or a file hands the CLI: size, UTF-8,
syntax, NaN/Infinity, numbers a double cannot hold, nesting depth, NUL and lone surrogates (jsonb
refuses both) are each refused with one line naming the problem, before anything is written.
"""

from __future__ import annotations

import json
import math
import re
import sys
from typing import Any, Callable

import orjson

_OPTIONS = orjson.OPT_NON_STR_KEYS  # {1: "x"} -> {"1": "x"}, as json.dumps does
# 19 digits in a row may be an integer beyond int64 (or a long fraction): decode those exactly.
_LONG_NUMBER = re.compile(r"\d{19}")
# Levels of objects/arrays a payload may nest: far more than any real payload needs, far below the
# depth where Python's parser (about 1,000) or PostgreSQL's would give up.
MAX_DEPTH = 100
# What jsonb cannot store in a string: NUL (\u0000) and UTF-16 surrogates that pair with nothing.
_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")


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


class InvalidJSON(ValueError):
    """Payload text `parse_object` refuses; the message says why in one line and never quotes the text."""


def parse_object(data: str | bytes, *, max_bytes: int) -> dict[str, Any]:
    """The JSON object in `data` (a CLI argument or one line of a file), exactly as jsonb will store
    it (integers of any size stay exact), or InvalidJSON naming the first problem found."""
    try:  # a str from argv carries undecodable bytes as lone surrogates: get the bytes back
        raw = data.encode("utf-8", "surrogateescape") if isinstance(data, str) else data
    except UnicodeEncodeError as exc:
        raise InvalidJSON(f"not valid UTF-8 (a lone surrogate at character {exc.start})") from None
    if len(raw) > max_bytes:
        raise InvalidJSON(f"{len(raw):,} bytes, over the {max_bytes:,}-byte limit (PGJOBS_MAX_PAYLOAD_BYTES)")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InvalidJSON(f"not valid UTF-8 (byte 0x{raw[exc.start]:02x} at offset {exc.start})") from None
    try:
        value = json.loads(text, parse_constant=_refuse_constant, parse_float=_finite_float, parse_int=_int)
    except json.JSONDecodeError as exc:
        raise InvalidJSON(f"not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}") from None
    except RecursionError:  # the stdlib's parser recurses once per level: 100,000 '[' end here
        raise InvalidJSON(f"objects/arrays nested deeper than {MAX_DEPTH} levels") from None
    if not isinstance(value, dict):
        raise InvalidJSON(f"must be a JSON object, got {_json_type(value)}")
    _check_values(value)
    return value


def _refuse_constant(name: str) -> Any:
    raise InvalidJSON(f"{name} is not JSON (PostgreSQL refuses NaN and infinities)")


def _finite_float(text: str) -> float:
    number = float(text)
    if not math.isfinite(number):
        raise InvalidJSON(f"the number {text[:40]} is beyond the range of a double")
    return number


def _int(text: str) -> int:
    limit = sys.get_int_max_str_digits()
    if limit and len(text.lstrip("-")) > limit:
        raise InvalidJSON(f"an integer of {len(text.lstrip('-')):,} digits; at most {limit:,} are accepted")
    return int(text)


def _check_values(root: dict[str, Any]) -> None:
    """Depth, NUL and lone surrogates, walked without recursion; errors name the path (a.b[2])."""
    stack: list[tuple[Any, int, str]] = [(root, 1, "")]
    while stack:
        value, depth, path = stack.pop()
        if isinstance(value, str):
            _check_string(value, f"at {path}" if path else "the payload")
        elif isinstance(value, (dict, list)):
            if depth > MAX_DEPTH:
                raise InvalidJSON(f"objects/arrays nested deeper than {MAX_DEPTH} levels")
            if isinstance(value, dict):
                for key, item in value.items():
                    here = f"{path}.{key}" if path else key
                    _check_string(key, f"a key at {path}" if path else "a top-level key")
                    stack.append((item, depth + 1, here))
            else:
                stack.extend((item, depth + 1, f"{path}[{i}]") for i, item in enumerate(value))


def _check_string(text: str, where: str) -> None:
    bad = _UNSTORABLE.search(text)
    if bad is None:
        return
    what = "\\u0000 (NUL)" if bad.group() == "\x00" else f"the lone surrogate \\u{ord(bad.group()):04x}"
    raise InvalidJSON(f"{what} in a string ({_printable(where)}): PostgreSQL's jsonb cannot store it")


def _printable(path: str) -> str:
    """A path for an error line: no control characters or surrogates, not too long."""
    shown = "".join(c if c.isprintable() else "?" for c in _UNSTORABLE.sub("?", path))
    return shown if len(shown) <= 80 else shown[:77] + "..."


def _json_type(value: Any) -> str:
    return {list: "an array", str: "a string", bool: "a boolean", type(None): "null"}.get(type(value), "a number")
