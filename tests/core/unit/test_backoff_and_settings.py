import pytest

from pgjobs.queue.backoff import backoff_seconds
from pgjobs.settings import Settings, parse_rate_limits
from pgjobs.sqlfiles import parse_queries, positional


def test_backoff_doubles_from_the_base_and_stops_at_the_cap():
    no_jitter = [backoff_seconds(a, base_ms=2000, cap_ms=10_000, rand=0.5) for a in range(1, 6)]
    assert no_jitter == [2.0, 4.0, 8.0, 10.0, 10.0]


def test_backoff_jitter_stays_within_its_fraction():
    low = backoff_seconds(3, base_ms=1000, cap_ms=60_000, jitter=0.25, rand=0.0)
    high = backoff_seconds(3, base_ms=1000, cap_ms=60_000, jitter=0.25, rand=0.999999)
    assert low == pytest.approx(3.0) and high == pytest.approx(5.0, rel=1e-4)


def test_rate_limits_parse_to_seconds_between_calls():
    assert parse_rate_limits("musicbrainz=1/s, discogs=60/min,x=10/s") == {
        "musicbrainz": 1.0, "discogs": 1.0, "x": 0.1}
    with pytest.raises(ValueError, match="NAME=COUNT/UNIT"):
        parse_rate_limits("musicbrainz=fast")


def test_settings_read_the_environment_and_hide_secrets(monkeypatch):
    monkeypatch.setenv("PGJOBS_DSN", "postgresql://u:hunter2@db/x")
    monkeypatch.setenv("PGJOBS_LEASE_SECONDS", "7")
    monkeypatch.setenv("PGJOBS_DISCOGS_TOKEN", "tok-secret")
    settings = Settings()
    assert settings.lease_seconds == 7
    assert "hunter2" not in repr(settings) and "tok-secret" not in repr(settings)
    assert settings.dsn.get_secret_value().endswith("@db/x")


def test_database_url_is_accepted_when_pgjobs_dsn_is_absent(monkeypatch):
    monkeypatch.delenv("PGJOBS_DSN", raising=False)
    monkeypatch.setenv("DATABASE_URL", "postgresql://elsewhere/db")
    assert Settings().dsn.get_secret_value() == "postgresql://elsewhere/db"


def test_named_queries_parse_and_reject_duplicates():
    text = "-- name: a\n-- doc with 100% comment\nSELECT 1;\n-- name: b\nSELECT %(x)s;\n"
    assert parse_queries(text) == {"a": "SELECT 1", "b": "SELECT %(x)s"}
    with pytest.raises(ValueError, match="defined twice"):
        parse_queries("-- name: a\nSELECT 1;\n-- name: a\nSELECT 2;")


def test_positional_numbers_each_distinct_name_once_and_keeps_literal_percent_signs():
    query, names = positional("SELECT %(b)s, %(a)s, %(b)s::text, '100%%'")
    assert (query, names) == ("SELECT $1, $2, $1::text, '100%'", ("b", "a"))
    with pytest.raises(ValueError, match="binary placeholder"):
        positional("SELECT %(ids)b")


def test_the_idle_in_transaction_timeout_stays_below_the_lease_unless_set(monkeypatch):
    from pgjobs.database import Timeouts

    assert Timeouts.default().idle_in_transaction_timeout == 15  # half the default 30 s lease
    monkeypatch.setenv("PGJOBS_LEASE_SECONDS", "3")
    assert Timeouts.from_settings(Settings()).idle_in_transaction_timeout == 1.5
    monkeypatch.setenv("PGJOBS_IDLE_IN_TRANSACTION_TIMEOUT", "0")  # explicitly off
    assert Timeouts.from_settings(Settings()).idle_in_transaction_timeout == 0
