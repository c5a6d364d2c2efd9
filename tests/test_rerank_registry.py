"""rerank.registry: a user's re-ranker registered by name runs through the same runner as the classic ones and ACP,
with its parameters resolved and reported; names are unique; ACP registers through the same interface, and rerank
itself never imports acp."""
import subprocess
import sys

import numpy as np
import pytest

import rerank
from features.feature_file import FeatureSet
from rerank import registry
from rerank import runner as rerank_runner
from rerank.neighbourhood import default_k1
from rerank.synthetic import clustered_embeddings


@pytest.fixture(scope="module")
def rows():
    data = clustered_embeddings(120, dim=16, images_per_identity=6, noise=1.4, seed=5)
    return FeatureSet(embedding=np.concatenate([data.query, data.gallery]),
                      pid=np.concatenate([data.q_pids, data.g_pids]), camid=np.concatenate([data.q_camids,
                                                                                            data.g_camids]),
                      split=np.repeat([1, 2], [len(data.query), len(data.gallery)]), dataset="market1501")


def oracle(query, gallery, params, model=None, metric="cosine", verbose=0):
    """Knows the identities: same-identity pairs come first when `cheat` is on, else the original ranking."""
    original = rerank.RerankedDistances(query.embedding, gallery.embedding, metric).dense()
    same = query.pid[:, None] == gallery.pid[None, :]
    return original - params["cheat"] * params["k"] * 10.0 * same


@pytest.fixture
def registered():
    method = registry.register(registry.Reranker("oracle_test", oracle, defaults={"cheat": 0, "k": None},
                                                 first_order=("k",), uses_metric=True))
    yield method
    registry.unregister("oracle_test")


def test_a_registered_method_runs_by_name_with_its_parameters(rows, registered):
    honest = rerank_runner.evaluate_method(rows, "oracle_test")
    cheating = rerank_runner.evaluate_method(rows, "oracle_test", {"cheat": 1})
    baseline = rerank_runner.evaluate_method(rows, "none")
    assert "oracle_test" in registry.names() and "oracle_test" in rerank_runner.method_names()
    assert honest["mAP"] == pytest.approx(baseline["mAP"]) and baseline["mAP"] < 0.9  # cheat=0: the original ranking
    assert cheating["mAP"] == pytest.approx(1.0) and cheating["cmc"][0] == 1.0  # the parameter reached the method
    # k derived from N/C of the gallery, as for the built-in methods
    assert cheating["params"] == {"cheat": 1, "k": default_k1(rows.gallery.pid), "metric": "cosine"}
    with pytest.raises(ValueError, match=r"unknown parameter\(s\) \['alpha'\]; known: \['cheat', 'k'\]"):
        rerank_runner.evaluate_method(rows, "oracle_test", {"alpha": 3})


def test_names_are_unique_and_unknown_names_list_the_registered(registered):
    with pytest.raises(ValueError, match="already registered"):
        registry.register(registry.Reranker("oracle_test", oracle))
    assert registry.register(registered) is registered  # the same object again is harmless
    replacement = registry.Reranker("oracle_test", oracle, defaults={"cheat": 1, "k": 2})
    assert registry.register(replacement, replace=True) is registry.get("oracle_test") is replacement
    with pytest.raises(ValueError, match=r"unknown re-ranking method 'nope'; registered: \[.*'aqe'.*'oracle_test'"):
        rerank_runner.default_params("nope")
    with pytest.raises(ValueError, match="not among its parameters"):
        registry.Reranker("bad", oracle, defaults={"k": 1}, first_order=("k1",))


def test_classic_methods_are_registered_with_their_signatures():
    for name, function in rerank.METHODS.items():
        method = registry.get(name)
        assert method.defaults == rerank_runner.default_params(name)
        assert set(method.defaults) | {"query", "gallery", "verbose"} == set(function.__code__.co_varnames[
            :function.__code__.co_argcount])
    assert registry.get("gnn").first_order == ("k1",) and registry.get("gnn").k2_within_k1
    assert registry.get("ecn").first_order == () and registry.get("none").defaults == {}


def test_acp_registers_through_the_same_interface_and_rerank_never_imports_acp():
    code = ("import sys, rerank, rerank.runner\n"
            "from rerank import registry\n"
            "assert 'acp' in registry.names() and 'acp' in rerank.runner.method_names()\n"  # known by module name
            "assert not any(m.split('.')[0] in ('acp', 'tensorflow') for m in sys.modules)\n"
            "method = registry.get('acp')\n"  # imports acp.acp_rerank, which registers through `register`
            "import acp.acp_rerank\n"
            "assert isinstance(method, registry.Reranker) and method is acp.acp_rerank.RERANKER\n"
            "assert method.needs_model and method.first_order == ('k1',) and method.defaults['k1'] is None\n"
            "print('ok')")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0 and done.stdout.strip().endswith("ok"), done.stderr[-3000:]


def test_a_method_known_by_module_is_imported_on_first_use(tmp_path, monkeypatch):
    package = tmp_path / "lazy_reranker_test"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "mine.py").write_text(
        "from rerank import registry\n"
        "def run(query, gallery, params, model=None, metric='cosine', verbose=0):\n"
        "    raise NotImplementedError\n"
        "RERANKER = registry.register(registry.Reranker('lazy_test', run, defaults={'k': 3}))\n")
    (package / "silent.py").write_text("")
    monkeypatch.syspath_prepend(str(tmp_path))
    registry.register_module("lazy_test", "lazy_reranker_test.mine")
    registry.register_module("silent_test", "lazy_reranker_test.silent")
    try:
        assert "lazy_test" in registry.names() and "lazy_reranker_test.mine" not in sys.modules
        with pytest.raises(ValueError, match="already registered"):  # the name is taken before the import, too
            registry.register(registry.Reranker("lazy_test", oracle))
        with pytest.raises(ValueError, match="already registered"):
            registry.register_module("lazy_test", "elsewhere")
        method = registry.get("lazy_test")
        assert method is sys.modules["lazy_reranker_test.mine"].RERANKER and method.defaults == {"k": 3}
        assert rerank_runner.default_params("lazy_test") == {"k": 3}
        with pytest.raises(ValueError, match="lazy_reranker_test.silent .*registered no method"):
            registry.get("silent_test")
    finally:
        for name in ("lazy_test", "silent_test"):
            registry.unregister(name)
        for module in ("lazy_reranker_test.mine", "lazy_reranker_test.silent", "lazy_reranker_test"):
            sys.modules.pop(module, None)
    assert "lazy_test" not in registry.names() and "silent_test" not in registry.names()
