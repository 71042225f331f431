"""The executor's pure parts: tracebacks are bounded and keep their end (where the error was raised)."""

from pgjobs.queue.executor import TRACEBACK_LIMIT, traceback_text


def _raise_deep(n: int, message: str = "at the bottom") -> None:
    if n:
        _raise_deep(n - 1, message)
    raise ValueError(message)


def test_a_long_traceback_keeps_its_last_8_kb():
    try:
        _raise_deep(3, "x" * 20_000 + " at the bottom")
    except ValueError as exc:
        text = traceback_text(exc)
    assert len(text) == TRACEBACK_LIMIT + 1 and text.startswith("…")
    assert text.rstrip().endswith("x at the bottom")


def test_a_short_traceback_is_kept_whole():
    try:
        _raise_deep(0)
    except ValueError as exc:
        text = traceback_text(exc)
    assert text.startswith("Traceback (most recent call last)") and "_raise_deep" in text
