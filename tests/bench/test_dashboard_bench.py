"""The dashboard workload at a tiny size: the data set is loaded once and reused, every page is
fetched from the real `pgjobs dashboard` and checked, and the target says SKIP below 1M roots."""

from __future__ import annotations

import psycopg
import pytest
from psycopg import sql

from benchkit import dashboard
from benchkit.harness import Bench, Config
from benchkit.schema import dbname_of, with_dbname


@pytest.fixture
def own_dataset_db(fresh_dsn: str, monkeypatch):
    """A data-set database named after the test's own (never the shared bench_dashboard_dataset)."""
    name = f"{dbname_of(fresh_dsn)}_dashboard_ds"
    monkeypatch.setattr(dashboard, "DATABASE", name)
    monkeypatch.setattr(dashboard, "RUNS_QUICK", 3)
    yield name
    with psycopg.connect(fresh_dsn, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


def test_every_page_is_fetched_checked_and_the_data_set_reused(fresh_dsn: str, own_dataset_db: str) -> None:
    lines: list[str] = []
    server = with_dbname(fresh_dsn, dbname_of(fresh_dsn))
    config = Config(dsn=server, quick=True, systems=("pgjobs",), workloads=("dashboard",), dashboard_roots=300,
                    say=lines.append)
    bench = Bench(config)
    bench.run_all()

    figures = [f for f in bench.figures if f.workload.startswith("dashboard-")]
    assert {f.workload for f in figures} >= {"dashboard-overview", "dashboard-roots", "dashboard-family",
                                             "dashboard-jobs", "dashboard-jobs-payload", "dashboard-job"}
    for figure in figures:
        run = figure.runs[0]
        assert run.ok, (figure.label, [c.detail for c in run.checks])
        assert run.result["samples"] == 3 and run.result["p95"] >= run.result["p50"] > 0
        assert run.result["client_p50"] >= run.result["p50"]  # the server's time lies within the client's
    target = dashboard.PageTarget().evaluate(bench)
    assert target["result"] in ("SKIP", "FAIL") and "300 roots" in target["line"]  # the target is stated at 1M
    assert any("loading 300 roots" in line for line in lines)

    again = Bench(Config(dsn=server, quick=True, systems=("pgjobs",), workloads=("dashboard",),
                         dashboard_roots=300, say=lines.append))
    again.run_all()
    assert again.figures[0].runs[0].result["dataset"].startswith(f"reused {own_dataset_db}")
