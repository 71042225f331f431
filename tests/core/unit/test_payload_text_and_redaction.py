"""What the CLI lets in and what it prints: jsontext.parse_object (payload text from outside) and
the redaction of DSN passwords in every error line."""

from __future__ import annotations

import pytest

from pgjobs.cli.common import UsageFailure, check_dsn, one_line, redact
from pgjobs.jsontext import MAX_DEPTH, InvalidJSON, parse_object


def test_a_good_object_comes_back_exactly():
    text = '{"id": 123456789012345678901234567890, "name": "Björk", "tags": ["a", {"b": null}], "x": 1.5}'
    assert parse_object(text, max_bytes=1000) == {"id": 123456789012345678901234567890, "name": "Björk",
                                                  "tags": ["a", {"b": None}], "x": 1.5}
    assert parse_object(text.encode(), max_bytes=1000) == parse_object(text, max_bytes=1000)


def test_depth_is_counted_from_the_top_level_object():
    at_limit = '{"a": ' + "[" * (MAX_DEPTH - 1) + "]" * (MAX_DEPTH - 1) + "}"
    assert parse_object(at_limit, max_bytes=10_000)
    with pytest.raises(InvalidJSON, match="nested deeper"):
        parse_object('{"a": ' + "[" * MAX_DEPTH + "]" * MAX_DEPTH + "}", max_bytes=10_000)


@pytest.mark.parametrize("text, message", [
    ('{"a": [1, {"b": "x\\u0000"}]}', r"\\u0000 \(NUL\) in a string \(at a\[1\]\.b\)"),
    ('{"k\\u0000": 1}', r"NUL\) in a string \(a top-level key\)"),
    ('{"a": "\\udfff"}', r"lone surrogate \\udfff"),
    ('{"a": "\\u0000\\u001b[31m"}', r"at a\)"),
])
def test_what_jsonb_cannot_store_is_named_with_its_path(text, message):
    with pytest.raises(InvalidJSON, match=message):
        parse_object(text, max_bytes=1000)


def test_the_size_limit_counts_bytes_of_utf8():
    text = '{"a": "' + "é" * 10 + '"}'  # 19 characters, 29 bytes
    assert parse_object(text, max_bytes=29)
    with pytest.raises(InvalidJSON, match="30 bytes, over the 29-byte limit"):
        parse_object(text.replace('"}', 'x"}'), max_bytes=29)


def test_an_error_never_quotes_the_payload():
    with pytest.raises(InvalidJSON) as caught:
        parse_object('{"password": "hunter2", "x": NaN}', max_bytes=1000)
    assert "hunter2" not in str(caught.value)


@pytest.mark.parametrize("text", [
    "connection to postgresql://app:s3cret@db:5432/jobs failed",
    "postgresql://:s3cret@db/jobs",
    "postgres://app:s3cr@t!x@db/jobs is bad",
    "host=db password=s3cret port=x",
    "host=db password = 's3 cret' port=x",
    "host=db password='s3cret",
    "postgresql://db/jobs?sslmode=require&password=s3cret&port=1",
    'end of string reached in URI: "postgresql://u:s3cret@[::1"',
])
def test_redact_hides_the_password_in_every_dsn_form(text):
    assert "s3cret" not in redact(text) and "s3 cret" not in redact(text) and "s3cr@t" not in redact(text)
    assert "***" in redact(text)


def test_one_line_is_the_first_line_redacted():
    assert one_line(RuntimeError("bad postgresql://u:s3cret@h/db\nsecond line")) == "bad postgresql://u:***@h/db"
    assert one_line(RuntimeError()) == "RuntimeError"


@pytest.mark.parametrize("dsn, message", [
    ("postgresql://u:s3cret@h:notaport/db", "port 'notaport' is not a number"),
    ("postgresql://u:s3cret@h1:5432,h2:x/db", "port 'x' is not a number"),
    ("host=h password=s3cret port=abc", "port 'abc'"),
    ("garbage", 'missing "="'),
    ("postgresql://u:s3cret@[::1", "matching"),
])
def test_check_dsn_refuses_in_one_line_without_the_password(dsn, message):
    with pytest.raises(UsageFailure) as caught:
        check_dsn(dsn)
    assert message in str(caught.value) and "s3cret" not in str(caught.value)


def test_check_dsn_accepts_what_libpq_accepts():
    for dsn in ("", "postgresql://u:s3cret@h1:5432,h2:5433/db", "host=/tmp dbname=x", "postgresql:///db"):
        check_dsn(dsn)
