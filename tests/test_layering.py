"""The package layering (DESIGN.md "Target layout"): imports point down only, so each shared part can be used without
the models above it, and the light modules load without TensorFlow.

    experiments, benchmarks -> kvmmn, acp -> features -> rerank -> data, engine (data and engine: one level)

kvmmn/ and acp/ never import each other; no package imports tests/. Checked on the source (every import statement,
also the ones inside functions) and, for the light modules, in a fresh interpreter."""
import ast
import pathlib
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
# package -> the packages of ours it must never import
FORBIDDEN = {
    "data": {"features", "rerank", "acp", "kvmmn", "experiments", "benchmarks", "tests"},
    "engine": {"features", "rerank", "acp", "kvmmn", "experiments", "benchmarks", "tests"},
    "rerank": {"features", "acp", "kvmmn", "experiments", "benchmarks", "tests"},
    "features": {"acp", "kvmmn", "experiments", "benchmarks", "tests"},
    "acp": {"kvmmn", "experiments", "benchmarks", "tests"},
    "kvmmn": {"acp", "experiments", "benchmarks", "tests"},
    "experiments": {"benchmarks", "tests"},
    "benchmarks": {"tests"},
}
# Importing these must not load TensorFlow (12-15 s) nor Keras: readers, evaluation protocols, feature files, the
# classic re-rankers with their registry, runner and evaluation (issue 16 item 5; they compute with keras.ops,
# issue 19, imported where they compute; ACP is known to the registry by module name and imported on first use).
LIGHT_MODULES = ["data.datasets", "data.evaluation", "data.record", "features.feature_file", "features.importers",
                 "rerank", "rerank.registry", "rerank.evaluation", "rerank.runner", "rerank.rankings",
                 "rerank.distances", "rerank.query_expansion", "rerank.k_reciprocal", "rerank.sca", "rerank.ecn",
                 "rerank.gnn", "rerank.reference", "rerank.synthetic"]


def imported_packages(path: pathlib.Path) -> set[str]:
    """Top-level names of every module `path` imports (absolute imports; ours are all absolute)."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.split(".")[0])
    return names


def violations(package: str) -> list[str]:
    found = []
    for path in sorted((ROOT / package).rglob("*.py")):
        for name in sorted(imported_packages(path) & FORBIDDEN[package]):
            found.append(f"{path.relative_to(ROOT)} imports {name}")
    return found


@pytest.mark.parametrize("package", sorted(FORBIDDEN))
def test_imports_point_down(package):
    assert (ROOT / package).is_dir()
    assert violations(package) == []


def test_the_check_sees_an_upward_import(tmp_path, monkeypatch):
    (tmp_path / "rerank").mkdir()
    (tmp_path / "rerank" / "bad.py").write_text("def f():\n    from acp import model\n    return model\n")
    monkeypatch.setattr(sys.modules[__name__], "ROOT", tmp_path)
    assert violations("rerank") == ["rerank/bad.py imports acp"]


@pytest.mark.parametrize("module", LIGHT_MODULES)
def test_light_modules_do_not_load_tensorflow(module):
    code = (f"import sys, importlib\nimportlib.import_module({module!r})\n"
            "heavy = sorted(m for m in ('tensorflow', 'keras', 'acp') if m in sys.modules)\nprint('heavy', heavy)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.strip().splitlines()[-1] == "heavy []", f"importing {module} loads {done.stdout.strip()}"
