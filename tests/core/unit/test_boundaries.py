"""The queue core knows nothing of music: no module under pgjobs/queue imports pgjobs.enrichment."""

import ast
from pathlib import Path

import pgjobs.queue

QUEUE_DIR = Path(pgjobs.queue.__file__).parent


def _imports(path: Path) -> list[str]:
    names = []
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            names += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.append(node.module)
    return names


def test_queue_package_never_imports_enrichment():
    modules = sorted(QUEUE_DIR.rglob("*.py"))
    assert len(modules) >= 8  # the walk really covers the package
    offenders = {p.name: m for p in modules for m in _imports(p) if m.startswith(("pgjobs.enrichment", "pgjobs.cli"))}
    assert offenders == {}


def test_the_walker_would_catch_an_enrichment_import(tmp_path):
    bad = tmp_path / "bad.py"
    bad.write_text("from pgjobs.enrichment import processors\n")
    assert _imports(bad) == ["pgjobs.enrichment"]
