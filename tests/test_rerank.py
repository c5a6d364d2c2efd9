"""rerank: every classic re-ranker against a plain dense implementation of its published algorithm, chunking
invariance, mAP gains on a clustered problem, and clear errors on bad input.

The dense references (`rerank.reference`) are written from the papers and the authors' released algorithms (loops
and N x N numpy arrays, float64), independently of the sparse implementations they check.
"""
import functools
import importlib
import json
import os
import subprocess
import sys

import numpy as np
import pytest

import rerank
from data.evaluation import evaluate
from rerank.evaluation import evaluate_features
from rerank.reference import (dense_alpha_qe, dense_ecn, dense_gnn, dense_k_reciprocal, dense_sca, euclidean,
                              unit)
from rerank.synthetic import clustered_embeddings


# ------------------------------------------------------------------------------------------------------- fixtures
@pytest.fixture(scope="module")
def small():
    """About 100 clustered embeddings, 16-d: small enough for the N x N references."""
    return clustered_embeddings(100, dim=16, images_per_identity=6, separation=1.0, camera_spread=0.3, noise=0.6,
                                seed=3)


@pytest.fixture(scope="module")
def problem():
    """A clustered re-ID problem whose baseline mAP leaves room for re-ranking."""
    return clustered_embeddings(600, dim=64, images_per_identity=10, separation=0.6, camera_spread=0.3, noise=1.1,
                                seed=1)


# ------------------------------------------------------------------------------------------ agreement with papers
@pytest.mark.parametrize("k1,k2,lambda_value", [(20, 6, 0.3), (7, 1, 0.0), (5, 3, 1.0), (9, 12, 0.5)])
def test_k_reciprocal_equals_reference(small, k1, k2, lambda_value):
    q, g = small.query, small.gallery
    expected = dense_k_reciprocal(euclidean(q, g), euclidean(q, q), euclidean(g, g), k1, k2, lambda_value)
    got = rerank.k_reciprocal(q, g, k1=k1, k2=k2, lambda_value=lambda_value).dense()
    np.testing.assert_allclose(got, expected, atol=1e-5)


def test_k_reciprocal_reaches_beyond_the_neighbour_lists(small):
    """With k1 = 20 on 6 images per identity, expanded sets hold neighbours of neighbours outside a row's own list,
    whose distances are computed pair by pair: the equality above covers that path."""
    from rerank.k_reciprocal import expanded_reciprocal_sets
    x = np.concatenate([small.query, small.gallery])
    _, indices, _ = rerank.nearest(x, 21, "sqeuclidean")
    rows, cols = expanded_reciprocal_sets(indices, 20)
    in_list = (indices[rows] == cols[:, None]).any(axis=1)
    assert not in_list.all()


@pytest.mark.parametrize("alpha", [0.0, 3.0])
def test_query_expansion_equals_formula(small, alpha):
    q, g = small.query, small.gallery
    method = rerank.aqe if alpha == 0.0 else rerank.alpha_qe
    params = {"k": 4} if alpha == 0.0 else {"k": 4, "alpha": alpha}
    # Squared: identical expanded vectors are 0 apart, which float32 sqrt(|a|^2 + |b|^2 - 2ab) resolves to ~5e-4.
    np.testing.assert_allclose(method(q, g, **params).dense() ** 2, dense_alpha_qe(q, g, 4, alpha) ** 2, atol=1e-5)


@pytest.mark.parametrize("alpha", [0.0, 3.0])
def test_raw_expansion_is_fastreids_and_differs_on_unequal_norms(small, alpha):
    """expand="raw" sums the raw embeddings (FastReID's aqe); on embeddings of unequal norms it is another
    expansion than summing unit vectors, and on equal norms the same one."""
    rng = np.random.default_rng(0)
    scale = np.exp(rng.uniform(-1.4, 1.4, (len(small.query) + len(small.gallery), 1))).astype(np.float32)
    q, g = small.query * scale[:len(small.query)], small.gallery * scale[len(small.query):]
    method = rerank.aqe if alpha == 0.0 else functools.partial(rerank.alpha_qe, alpha=alpha)
    raw = method(q, g, k=4, expand="raw").dense()
    np.testing.assert_allclose(raw ** 2, dense_alpha_qe(q, g, 4, alpha, raw=True) ** 2, atol=1e-5)
    assert not np.allclose(raw, method(q, g, k=4).dense(), atol=1e-3)
    equal_q, equal_g = unit(q) * 3.0, unit(g) * 3.0
    np.testing.assert_allclose(method(equal_q, equal_g, k=4, expand="raw").dense() ** 2,
                               method(equal_q, equal_g, k=4).dense() ** 2, atol=1e-5)
    with pytest.raises(ValueError, match="expand='unit': choose one of normalized, raw"):
        method(q, g, k=4, expand="unit")


def test_alpha_qe_k_reciprocal_is_k_reciprocal_of_expanded(small):
    q, g = small.query, small.gallery
    eq, eg = rerank.expanded_embeddings(q, g, k=4, alpha=3.0)
    expected = dense_k_reciprocal(euclidean(eq, eg), euclidean(eq, eq), euclidean(eg, eg), 8, 3, 0.3)
    got = rerank.alpha_qe_k_reciprocal(q, g, k=4, alpha=3.0, k1=8, k2=3, lambda_value=0.3).dense()
    np.testing.assert_allclose(got, expected, atol=1e-5)


@pytest.mark.parametrize("k1,k2", [(6, 3), (10, 1)])
def test_sca_equals_reference(small, k1, k2):
    expected = dense_sca(small.query, small.gallery, k1, k2)
    got = rerank.sca(small.query, small.gallery, k1=k1, k2=k2, fallback=False).dense()
    np.testing.assert_allclose(got, expected, atol=1e-5)


@pytest.mark.parametrize("k,t,q", [(5, 2, 3), (4, 3, 4)])
def test_ecn_equals_reference(small, k, t, q):
    expected = dense_ecn(small.query, small.gallery, k, t, q)
    got = rerank.ecn(small.query, small.gallery, k=k, t=t, q=q, fallback=False).dense()
    np.testing.assert_allclose(got, expected, atol=1e-5)


@pytest.mark.parametrize("k1,k2", [(6, 3), (8, 1)])
def test_gnn_equals_reference(small, k1, k2):
    similarity = dense_gnn(small.query, small.gallery, k1, k2)
    got = rerank.gnn(small.query, small.gallery, k1=k1, k2=k2, fallback=False).dense()
    if k2 == 1:  # the release ranks by the raw count of shared neighbours; ours divides A by sqrt(k1)
        similarity = similarity / k1
    np.testing.assert_allclose(got, 1.0 - similarity, atol=1e-5)


def test_gnn_lambda_mixes_in_the_original_cosine_distance(small):
    """lambda_value = 0.3 (the 2023 upstream): (1 - lambda) (1 - A_p . A_g) + lambda cosine distance; the
    default 0 is the 2020 release."""
    similarity = dense_gnn(small.query, small.gallery, 6, 3)
    original = 1.0 - unit(small.query) @ unit(small.gallery).T
    mixed = rerank.gnn(small.query, small.gallery, k1=6, k2=3, lambda_value=0.3).dense()
    np.testing.assert_allclose(mixed, 0.7 * (1.0 - similarity) + 0.3 * original, atol=1e-5)
    default = rerank.gnn(small.query, small.gallery, k1=6, k2=3, fallback=False).dense()
    np.testing.assert_allclose(default, 1.0 - similarity, atol=1e-5)
    assert (np.argsort(mixed, axis=1, kind="stable") != np.argsort(default, axis=1, kind="stable")).any()
    with pytest.raises(ValueError, match="lambda_value=1.5 must be in"):
        rerank.gnn(small.query, small.gallery, lambda_value=1.5)


@pytest.mark.parametrize("method,params", [("sca", {"k1": 6, "k2": 3}), ("ecn", {"k": 5, "t": 2, "q": 3}),
                                           ("gnn", {"k1": 6, "k2": 3})])
def test_fallback_orders_unrelated_pairs_by_original_distance(small, method, params):
    plain = rerank.rerank(method, small.query, small.gallery, fallback=False, **params).dense()
    ordered = rerank.rerank(method, small.query, small.gallery, **params).dense()
    related = plain < 1.0
    assert related.any() and (~related).any()
    np.testing.assert_array_equal(ordered[related], plain[related])
    assert (ordered[~related] >= 1.0).all()
    if method == "sca":
        original = euclidean(small.query, small.gallery)
    else:  # ECN and GNN rank by cosine distance
        original = 1.0 - unit(small.query) @ unit(small.gallery).T
    for row in range(len(ordered)):
        unrelated = np.nonzero(~related[row])[0]
        by_fallback = unrelated[np.argsort(ordered[row, unrelated], kind="stable")]
        by_original = unrelated[np.argsort(original[row, unrelated], kind="stable")]
        np.testing.assert_array_equal(by_fallback, by_original)


def test_expand_embeddings_is_eq1():
    rng = np.random.default_rng(0)
    features = rng.standard_normal((30, 5)).astype(np.float32)
    idx = rng.integers(0, 30, (12, 4))
    weights = rng.random((12, 4)).astype(np.float32)
    expected = np.einsum("nk,nkd->nd", weights, features[idx])
    np.testing.assert_allclose(rerank.expand_embeddings(features, idx, weights, chunk_size=5), expected, rtol=1e-5)


# ------------------------------------------------------------------------------------------------ usefulness
@pytest.mark.parametrize("method,params", [
    ("aqe", {"k": 5}), ("alpha_qe", {"k": 10}), ("k_reciprocal", {"k1": 10, "k2": 3}),
    ("alpha_qe_k_reciprocal", {"k": 10, "k1": 10, "k2": 3}), ("sca", {"k1": 10, "k2": 3}),
    ("ecn", {"k": 10, "t": 3, "q": 8}), ("gnn", {"k1": 10, "k2": 3})])
def test_methods_improve_map(problem, method, params):
    labels = (problem.q_pids, problem.g_pids, problem.q_camids, problem.g_camids)
    baseline = evaluate_features(problem.query, problem.gallery, *labels)["mAP"]
    reranked = rerank.evaluate_reranked(rerank.rerank(method, problem.query, problem.gallery, **params), *labels)
    assert baseline < 0.8
    assert reranked["mAP"] > baseline + 0.05, (method, baseline, reranked["mAP"])


# ----------------------------------------------------------------------------------------------------- scale
@pytest.fixture(scope="module")
def large():
    return clustered_embeddings(3000, dim=32, images_per_identity=10, separation=0.8, camera_spread=0.3,
                                noise=0.6, seed=2)


@pytest.mark.parametrize("method,params", [
    ("aqe", {"k": 8}), ("alpha_qe", {"k": 8}), ("k_reciprocal", {}), ("alpha_qe_k_reciprocal", {"k": 8}),
    ("sca", {}), ("ecn", {}), ("gnn", {})])
def test_chunked_equals_one_chunk(large, method, params):
    one = rerank.rerank(method, large.query, large.gallery, chunk_size=len(large.query) + len(large.gallery),
                        **params).dense(chunk_size=len(large.query))
    chunked = rerank.rerank(method, large.query, large.gallery, chunk_size=700, **params)
    blocks = list(chunked.iter_blocks(chunk_size=97))
    assert len(blocks) == 4 and blocks[-1][1] == len(large.query)
    np.testing.assert_allclose(np.concatenate([b for _, _, b in blocks]), one, atol=1e-5)


def test_top_k_and_block_evaluation_match_dense(problem):
    labels = (problem.q_pids, problem.g_pids, problem.q_camids, problem.g_camids)
    result = rerank.k_reciprocal(problem.query, problem.gallery, k1=10, k2=3)
    dense = np.asarray(result)
    np.testing.assert_array_equal(dense, result.dense())
    distances, indices = result.top_k(7, chunk_size=13)
    np.testing.assert_array_equal(indices, np.argsort(dense, axis=1, kind="stable")[:, :7])
    # Other chunk sizes change float32 matmul rounding, not the order.
    np.testing.assert_allclose(distances, np.take_along_axis(dense, indices, axis=1), rtol=1e-6)
    blockwise = rerank.evaluate_reranked(result, *labels, chunk_size=11)
    whole = evaluate(dense, *labels)
    assert blockwise["mAP"] == pytest.approx(whole["mAP"], abs=1e-12)
    np.testing.assert_allclose(blockwise["cmc"], whole["cmc"])
    assert blockwise["num_queries"] == whole["num_queries"]


# ------------------------------------------------------------------------------------------------- bad input
def test_bad_input_raises_clear_errors(small):
    q, g = small.query, small.gallery
    n = len(q) + len(g)
    with pytest.raises(ValueError, match=r"k1=%d is out of range" % n):
        rerank.k_reciprocal(q, g, k1=n)
    with pytest.raises(ValueError, match="k1"):
        rerank.sca(q, g, k1=n + 1)
    with pytest.raises(ValueError, match="k2=9"):
        rerank.gnn(q, g, k1=8, k2=9)
    with pytest.raises(ValueError, match="lambda_value"):
        rerank.k_reciprocal(q, g, lambda_value=1.5)
    with pytest.raises(ValueError, match="k must be an integer"):
        rerank.aqe(q, g, k=2.5)
    bad = q.copy()
    bad[3, 1] = np.nan
    with pytest.raises(ValueError, match="query row 3 has a non-finite value"):
        rerank.ecn(bad, g)
    bad = g.copy()
    bad[7, 0] = np.inf
    with pytest.raises(ValueError, match="gallery row 7"):
        rerank.alpha_qe(q, bad)
    with pytest.raises(ValueError, match="width 16 but gallery embeddings have width 8"):
        rerank.k_reciprocal(q, g[:, :8])
    with pytest.raises(ValueError, match="non-empty 2-D"):
        rerank.aqe(q[:0], g)
    with pytest.raises(ValueError, match="unknown re-ranking method 'acp2'"):
        rerank.rerank("acp2", q, g)
    with pytest.raises(ValueError, match="outside"):
        rerank.expand_embeddings(q, np.array([[0, len(q)]]), np.ones((1, 2)))
    with pytest.raises(ValueError, match="weights have shape"):
        rerank.expand_embeddings(q, np.array([[0, 1]]), np.ones((1, 3)))
    labels = (small.q_pids, small.g_pids[:-1], small.q_camids, small.g_camids[:-1])
    with pytest.raises(ValueError, match="shape"):
        rerank.evaluate_reranked(rerank.aqe(q, g, k=3), *labels)


def test_methods_table_is_uniform(small):
    """Every `--method` name dispatches to its own function, and every method re-ranks (changes the ranking)."""
    module = {name: importlib.import_module(f"rerank.{name}")  # the package re-exports functions of these names
              for name in ("query_expansion", "k_reciprocal", "sca", "ecn", "gnn")}
    functions = {"aqe": module["query_expansion"].aqe, "alpha_qe": module["query_expansion"].alpha_qe,
                 "k_reciprocal": module["k_reciprocal"].k_reciprocal,
                 "alpha_qe_k_reciprocal": module["k_reciprocal"].alpha_qe_k_reciprocal,
                 "sca": module["sca"].sca, "ecn": module["ecn"].ecn, "gnn": module["gnn"].gnn}
    assert set(rerank.METHODS) == set(functions)
    original = np.argsort(1.0 - unit(small.query) @ unit(small.gallery).T, axis=1, kind="stable")
    for name, function in functions.items():
        result = rerank.rerank(name, small.query, small.gallery, chunk_size=40)
        assert isinstance(result, rerank.RerankedDistances)
        np.testing.assert_allclose(result.dense(), function(small.query, small.gallery).dense(), atol=1e-6,
                                   err_msg=name)
        changed = (np.argsort(result.dense(), axis=1, kind="stable") != original).any(axis=1)
        assert changed.mean() > 0.2, f"{name} changed the ranking of {changed.mean():.0%} of the queries"


def test_rerank_benchmarks_add_one_run_at_a_time_with_append(tmp_path):
    """Large sizes are measured one method per run (hours on a CPU); --append merges each run into the table."""
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

    def bench(module, *flags):
        subprocess.run([sys.executable, "-m", f"benchmarks.{module}", "--verbose=false", f"--out_dir={tmp_path}",
                        *flags], cwd=root, check=True, capture_output=True)
        return json.loads((tmp_path / f"{module[len('bench_'):]}.json").read_text())["rows"]

    classic = ("--sizes=200", "--dim=16", "--noise=1.0", "--dense_max=0")
    bench("bench_rerank", *classic, "--methods=aqe")
    rows = bench("bench_rerank", *classic, "--methods=ecn", "--append")
    assert [r["method"] for r in rows] == ["aqe", "baseline", "ecn"]  # the second run's baseline replaced the first
    assert all(r["onednn"] == os.environ["TF_ENABLE_ONEDNN_OPTS"] and r["N"] == 200 and r["dim"] == 16 for r in rows)
    assert rows[0]["mAP"] > rows[1]["mAP"]  # AQE helps on clustered embeddings
    assert [r["method"] for r in bench("bench_rerank", *classic, "--methods=ecn")] == ["baseline", "ecn"]

    bench("bench_acp_rerank", "--sizes=200")
    rows = bench("bench_acp_rerank", "--sizes=150", "--append")
    assert [(r["N"], r["k1"]) for r in rows] == [(150, 9), (200, 9)]  # N/C of the gallery
    assert all(r["peak_extra_mb"] >= 0 and r["rerank_s"] > 0 for r in rows)
