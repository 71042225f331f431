"""End-to-end fixtures (the real CLI in subprocesses): see tests/clitools.py."""

from clitools import cli, make_cli, procs, sql, wait_for  # noqa: F401  (fixtures)
