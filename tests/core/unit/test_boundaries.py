"""The library and its apps stay apart, by their imports.

- No module of pgjobs outside pgjobs/enrichment, and no core test, imports the enrichment app or
  its sandbox (not even by name in a string, as `importlib.import_module` would).
- The enrichment app uses only the public face of the library: no underscore-prefixed name or
  module of pgjobs, and from the queue only what `pgjobs.queue` exports (`__all__`), never its
  internal modules — the API a user's app has.

The walkers read source with `ast` (nothing is imported), resolve relative imports, and are each
shown catching a planted offender, so a silent walker cannot pass.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass
from pathlib import Path

import pgjobs
import pgjobs.queue

PACKAGE = Path(pgjobs.__file__).parent
TESTS_CORE = Path(__file__).resolve().parents[1]
APP_MODULES = ("pgjobs.enrichment", "pgjobs.sandbox")


@dataclass(frozen=True)
class Imported:
    """One imported module, or one name taken from a module (`from module import name`)."""

    module: str
    name: str | None
    line: int

    @property
    def target(self) -> str:
        return f"{self.module}.{self.name}" if self.name else self.module


def module_name(path: Path, root: Path, package: str) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join([package, *parts])


def imports(path: Path, *, root: Path, package: str) -> list[Imported]:
    """Every import in the file, anywhere in it (functions too), with relative ones made absolute."""
    here = module_name(path, root, package)
    is_package = path.name == "__init__.py"
    found: list[Imported] = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), filename=str(path))):
        if isinstance(node, ast.Import):
            found += [Imported(alias.name, None, node.lineno) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            module = node.module or ""
            if node.level:
                base = here.split(".")
                base = base[:len(base) - node.level + (1 if is_package else 0)]
                module = ".".join(base + ([module] if module else []))
            found += [Imported(module, alias.name, node.lineno) for alias in node.names]
    return found


def strings(path: Path) -> list[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    return [n.value for n in ast.walk(tree) if isinstance(n, ast.Constant) and isinstance(n.value, str)]


def names_an_app(target: str) -> bool:
    return any(target == m or target.startswith(m + ".") for m in APP_MODULES)


def app_imports(root: Path, package: str, files: list[Path]) -> list[str]:
    """Offences against the first rule in `files`: 'path:line: what'."""
    offences = []
    for path in files:
        for imp in imports(path, root=root, package=package):
            if names_an_app(imp.target) or names_an_app(imp.module):
                offences.append(f"{path.relative_to(root)}:{imp.line}: imports {imp.target}")
        offences += [f"{path.relative_to(root)}: names {s!r}" for s in strings(path)
                     if any(m in s for m in APP_MODULES)]
    return offences


def private_uses(root: Path, package: str, files: list[Path], queue_api: set[str]) -> list[str]:
    """Offences against the second rule in `files`: 'path:line: what'."""
    offences = []
    for path in files:
        for imp in imports(path, root=root, package=package):
            if not imp.module.startswith(package + ".") and imp.module != package:
                continue  # another library
            if imp.module == f"{package}.enrichment" or imp.module.startswith(f"{package}.enrichment."):
                continue  # the app's own modules
            where = f"{path.relative_to(root)}:{imp.line}"
            if any(part.startswith("_") for part in imp.target.split(".")):
                offences.append(f"{where}: private {imp.target}")
            elif imp.module.startswith(f"{package}.queue."):
                offences.append(f"{where}: {imp.target} is inside the queue; import from {package}.queue")
            elif imp.module == f"{package}.queue" and imp.name not in queue_api:
                offences.append(f"{where}: {imp.target} is not in {package}.queue.__all__")
    return offences


def core_files(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*.py") if "enrichment" not in p.relative_to(root).parts[:1])


# --- the rules, on the real tree ------------------------------------------------------------------


def test_the_walk_covers_the_whole_library_but_the_app():
    walked = {module_name(p, PACKAGE, "pgjobs") for p in core_files(PACKAGE)}
    every = {module_name(p, PACKAGE, "pgjobs") for p in PACKAGE.rglob("*.py")}
    assert walked == {m for m in every if not m.startswith("pgjobs.enrichment")}
    for expected in ("pgjobs", "pgjobs.app", "pgjobs.migrations", "pgjobs.settings", "pgjobs.queue",
                     "pgjobs.queue.worker", "pgjobs.queue.jobs", "pgjobs.cli", "pgjobs.cli.worker"):
        assert expected in walked
    assert len(walked) >= 25
    assert not (PACKAGE / "sandbox").exists()  # the sandbox lives in the app now


def test_the_library_never_imports_the_enrichment_app():
    assert app_imports(PACKAGE, "pgjobs", core_files(PACKAGE)) == []


def test_the_core_tests_never_import_the_enrichment_app():
    files = sorted(TESTS_CORE.rglob("*.py"))
    assert len(files) >= 10 and Path(__file__).resolve() in files
    offences = [o for o in app_imports(TESTS_CORE, "tests.core", files)
                if not o.startswith("unit/test_boundaries.py")]  # this file names them to forbid them
    assert offences == []


def test_the_enrichment_app_uses_only_the_public_api():
    app_files = sorted((PACKAGE / "enrichment").rglob("*.py"))
    assert len(app_files) >= 20
    assert any(imp.module == "pgjobs.queue" for p in app_files for imp in imports(p, root=PACKAGE, package="pgjobs"))
    assert private_uses(PACKAGE, "pgjobs", app_files, set(pgjobs.queue.__all__)) == []


# --- the walkers catch what they are for ----------------------------------------------------------


def _plant(root: Path, files: dict[str, str]) -> list[Path]:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return sorted(root.rglob("*.py"))


def test_the_walker_catches_every_way_of_importing_the_app(tmp_path):
    files = _plant(tmp_path, {
        "__init__.py": "",
        "cli/__init__.py": "from ..enrichment import app\n",
        "cli/late.py": "def run():\n    from pgjobs.enrichment.app import make_app\n",
        "a.py": "import pgjobs.enrichment\n",
        "b.py": "from pgjobs import enrichment\n",
        "c.py": "import pgjobs.sandbox.server as sandbox\n",
        "d.py": "from . import sandbox\n",
        "e.py": "import importlib\nimportlib.import_module('pgjobs.enrichment.app')\n",
        "clean.py": "from pgjobs.queue import Worker\nfrom . import enrichments_are_fine\n",
        "enrichment/__init__.py": "",
    })
    offences = app_imports(tmp_path, "pgjobs", core_files(tmp_path))
    assert sorted(o.split(":")[0] for o in offences) == ["a.py", "b.py", "c.py", "cli/__init__.py", "cli/late.py",
                                                        "d.py", "e.py"]


def test_the_walker_catches_private_and_internal_queue_imports(tmp_path):
    files = _plant(tmp_path, {
        "__init__.py": "",
        "enrichment/__init__.py": "",
        "enrichment/a.py": "from pgjobs.queue import _private\n",
        "enrichment/b.py": "from pgjobs.queue.jobs import Q\n",
        "enrichment/c.py": "import pgjobs.queue.worker\n",
        "enrichment/d.py": "from ..queue import NotExported\n",
        "enrichment/e.py": "from pgjobs.cli.common import _helper\n",
        "enrichment/f.py": "from pgjobs.queue.context import JobContext\n",
        "enrichment/own.py": "from pgjobs.enrichment.sandbox.server import _Server\nfrom .a import _mine\n",
        "enrichment/ok.py": "from pgjobs.queue import Worker, enqueue\nfrom pgjobs.app import App\nimport httpx\n",
    })
    offences = private_uses(tmp_path, "pgjobs", files, {"Worker", "enqueue"})
    assert sorted(o.split(":")[0] for o in offences) == [f"enrichment/{c}.py" for c in "abcdef"]
