"""pgjobs.jsontext: orjson's speed, the stdlib's answers where the two would differ."""

from __future__ import annotations

import json
from datetime import datetime, timezone

import pytest

from pgjobs import jsontext


@pytest.mark.parametrize("value", [
    {"seq": 1, "name": "Björk", "nested": {"list": [1, 2.5, None, True, "x"]}},
    {"quote": 'a "b" \\ c', "empty": {}, "none": None},
    [],
])
def test_round_trips_like_the_stdlib(value):
    text = jsontext.dumps(value)
    assert json.loads(text) == value
    assert jsontext.loads(text) == value
    assert " " not in jsontext.dumps({"a": [1, 2]})  # compact, as payload_text always was


def test_integers_beyond_64_bits_stay_exact_both_ways():
    big = {"id": 2**70, "negative": -(2**65)}
    text = jsontext.dumps(big)
    assert json.loads(text) == big
    assert jsontext.loads(text) == big
    assert type(jsontext.loads('{"n": 12345678901234567890123}')["n"]) is int


def test_non_string_keys_become_strings_as_in_the_stdlib():
    assert jsontext.dumps({1: "a", 2: "b"}) == json.dumps({1: "a", 2: "b"}, separators=(",", ":"))


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), float("-inf")])
def test_nan_and_infinity_raise_instead_of_turning_into_null(bad):
    with pytest.raises(ValueError, match="NaN"):
        jsontext.dumps({"deep": [{"x": bad}]})
    assert jsontext.dumps({"deep": [{"x": None}]}) == '{"deep":[{"x":null}]}'  # real nulls are fine


def test_unknown_types_raise_type_error_unless_default_converts_them():
    with pytest.raises(TypeError):
        jsontext.dumps({"x": object()})
    marker = object()
    assert jsontext.dumps({"x": marker}, default=lambda o: "converted") == '{"x":"converted"}'
    when = datetime(2026, 11, 22, tzinfo=timezone.utc)
    assert json.loads(jsontext.dumps({"at": when}, default=str))["at"].startswith("2026-11-22")


def test_malformed_text_raises_value_error():
    with pytest.raises(ValueError):
        jsontext.loads("{not json")
