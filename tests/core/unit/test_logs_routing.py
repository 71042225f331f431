"""psycopg's and psycopg_pool's warnings go through pgjobs' handler: a JSON log stays all JSON."""

import json
import logging

from pgjobs import logs


def test_pool_warnings_are_json_lines_when_the_format_is_json(capsys):
    loggers = [logging.getLogger(name) for name in ("pgjobs", "psycopg")]
    saved = [(lg.handlers[:], lg.level, lg.propagate) for lg in loggers]
    try:
        logs.configure("json", "INFO")
        logging.getLogger("psycopg.pool").warning("couldn't get a connection after %.2f sec", 30.0)
        logging.getLogger("psycopg.pool").info("below WARNING: not ours to show")
        logging.getLogger("pgjobs.worker").info("worker started", extra={"queues": "default"})
        lines = [json.loads(line) for line in capsys.readouterr().err.splitlines()]
    finally:
        for lg, (handlers, level, propagate) in zip(loggers, saved):
            lg.handlers[:], lg.propagate = handlers, propagate
            lg.setLevel(level)
    assert [(line["logger"], line["level"], line["msg"]) for line in lines] == [
        ("psycopg.pool", "warning", "couldn't get a connection after 30.00 sec"),
        ("pgjobs.worker", "info", "worker started"),
    ]
