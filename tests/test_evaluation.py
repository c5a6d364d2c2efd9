"""data.evaluation (and rerank.evaluation.evaluate_features, rerank.knn) against a per-query brute-force reference
and hand-computed cases; its benchmark."""
import json
import os
import subprocess
import sys

import numpy as np
import pytest

from benchmarks import run as benchmarks_run
from data.evaluation import evaluate, format_results
from rerank import knn
from rerank.evaluation import evaluate_features
from rerank.knn import pairwise_distance


def reference(distmat, q_pids, g_pids, q_camids, g_camids, protocol, max_rank):
    """Literal per-query loops: stable ranking, removal, then the textbook definitions."""
    cmcs, aps, inps, skipped = [], [], [], 0
    for i in range(len(q_pids)):
        order = np.argsort(distmat[i], kind="stable")
        if protocol == "market1501":
            order = [j for j in order if not (g_pids[j] == q_pids[i] and g_camids[j] == q_camids[i])]
        hits = [g_pids[j] == q_pids[i] for j in order]
        if not any(hits):
            skipped += 1
            continue
        ranks = [r + 1 for r, hit in enumerate(hits) if hit]
        aps.append(np.mean([(k + 1) / rank for k, rank in enumerate(ranks)]))
        inps.append(len(ranks) / ranks[-1])
        cmcs.append([1.0 if ranks[0] <= k else 0.0 for k in range(1, max_rank + 1)])
    return np.mean(cmcs, axis=0), np.mean(aps), np.mean(inps), len(aps), skipped


def random_problem(seed, num_query=25, num_gallery=70, num_pids=8, num_cams=3, levels=12):
    rng = np.random.default_rng(seed)
    q_pids = rng.integers(1, num_pids, num_query)
    g_pids = rng.integers(0, num_pids, num_gallery)  # pid 0: distractors, never a query identity
    q_camids = rng.integers(0, num_cams, num_query)
    g_camids = rng.integers(0, num_cams, num_gallery)
    distmat = rng.integers(0, levels, (num_query, num_gallery)) / levels  # coarse levels: many ties
    return distmat, q_pids, g_pids, q_camids, g_camids


@pytest.mark.parametrize("protocol", ["market1501", "vehicleid"])
@pytest.mark.parametrize("seed,max_rank,chunk_size", [(0, 10, None), (1, 100, 4), (2, 5, 1)])
def test_matches_brute_force_reference(protocol, seed, max_rank, chunk_size):
    problem = random_problem(seed)
    cmc, mean_ap, minp, evaluated, skipped = reference(*problem, protocol, max_rank)
    got = evaluate(*problem, protocol=protocol, max_rank=max_rank, chunk_size=chunk_size)
    np.testing.assert_allclose(got["cmc"], cmc, atol=1e-12)
    assert got["mAP"] == pytest.approx(mean_ap, abs=1e-12)
    assert got["mINP"] == pytest.approx(minp, abs=1e-12)
    assert (got["num_queries"], got["num_skipped"]) == (evaluated, skipped)


# One query (pid 1, camera 0); gallery index: 0      1      2      3      4      5
HAND = dict(distmat=[[0.1, 0.2, 0.3, 0.4, 0.5, 0.6]], q_pids=[1], q_camids=[0],
            g_pids=[2, 1, 1, 3, 1, 4], g_camids=[1, 1, 0, 1, 2, 1])


def test_hand_computed_market1501():
    # Index 2 (same pid, same camera) leaves; matches then sit at ranks 2 and 4.
    got = evaluate(**HAND, max_rank=5)
    np.testing.assert_allclose(got["cmc"], [0, 1, 1, 1, 1])
    assert got["mAP"] == pytest.approx((1 / 2 + 2 / 4) / 2)
    assert got["mINP"] == pytest.approx(2 / 4)
    assert (got["num_queries"], got["num_skipped"]) == (1, 0)


def test_hand_computed_vehicleid_removes_nothing():
    got = evaluate(**HAND, protocol="vehicleid", max_rank=3)
    np.testing.assert_allclose(got["cmc"], [0, 1, 1])
    assert got["mAP"] == pytest.approx((1 / 2 + 2 / 3 + 3 / 5) / 3)
    assert got["mINP"] == pytest.approx(3 / 5)


def test_ties_are_broken_by_gallery_index():
    # All distances equal: the ranking is the gallery order.
    got = evaluate([[0.5, 0.5, 0.5, 0.5]], [7], [3, 7, 3, 7], [0], [1, 1, 1, 1], max_rank=4)
    np.testing.assert_allclose(got["cmc"], [0, 1, 1, 1])
    assert got["mAP"] == pytest.approx((1 / 2 + 2 / 4) / 2)
    assert got["mINP"] == pytest.approx(2 / 4)


def test_cmc_beyond_gallery_size_repeats_last_value():
    got = evaluate(**HAND, max_rank=50)
    assert got["cmc"].shape == (50,)
    np.testing.assert_allclose(got["cmc"][1:], 1.0)


def test_queries_without_valid_match_are_skipped_and_counted():
    distmat = [[0.1, 0.2, 0.3], [0.3, 0.2, 0.1], [0.2, 0.1, 0.3]]
    q_pids, q_camids = [1, 2, 5], [0, 0, 0]
    g_pids, g_camids = [1, 2, 3], [1, 0, 1]  # query 1's only match shares its camera; pid 5 is absent
    got = evaluate(distmat, q_pids, g_pids, q_camids, g_camids, max_rank=3)
    assert (got["num_queries"], got["num_skipped"]) == (1, 2)
    np.testing.assert_allclose(got["cmc"], [1, 1, 1])
    got = evaluate(distmat, q_pids, g_pids, q_camids, g_camids, protocol="vehicleid", max_rank=3)
    assert (got["num_queries"], got["num_skipped"]) == (2, 1)
    np.testing.assert_allclose(got["cmc"], [0.5, 1, 1])


def test_all_queries_skipped_is_an_error():
    with pytest.raises(ValueError, match="no query has a true match"):
        evaluate([[0.1, 0.2]], [1], [2, 3], [0], [0, 0])


# Single shot, one query (pid 1, camera 0). Gallery: pid 1 at 0.3 and 0.6 (camera 1) plus one at 0.05 in the
# query's camera (removed), pid 2 at 0.1 and 0.5, pid 3 at 0.4. The four equally likely sampled galleries put the
# true match at rank 2 (0.3 vs 0.1), 1 (0.3 vs 0.5), 3 and 3 (0.6): CMC = 1/4, 1/2, 1.
SINGLE = dict(distmat=[[0.05, 0.1, 0.3, 0.4, 0.5, 0.6]], q_pids=[1], q_camids=[0],
              g_pids=[1, 2, 1, 3, 2, 1], g_camids=[0, 1, 1, 1, 1, 1])


def test_single_shot_cmc_converges_to_exact_expectation():
    got = evaluate(**SINGLE, protocol="single_shot", max_rank=4, trials=4000, seed=3)
    np.testing.assert_allclose(got["cmc"], [0.25, 0.5, 1, 1], atol=0.03)
    # mAP / mINP come from the full ranking after removal: matches at ranks 2 and 5.
    assert got["mAP"] == pytest.approx((1 / 2 + 2 / 5) / 2)
    assert got["mINP"] == pytest.approx(2 / 5)


def test_single_shot_cmc_is_an_average_of_trials():
    for trials in (1, 2, 3):
        cmc = evaluate(**SINGLE, protocol="single_shot", max_rank=3, trials=trials, seed=11)["cmc"]
        assert np.allclose(cmc * trials, np.round(cmc * trials))  # each trial adds a 0/1 step per rank


def test_single_shot_ties_are_broken_by_gallery_index():
    # One image per identity, all at the same distance: the match (index 2) ranks after index 0 and 1.
    got = evaluate([[0.5, 0.5, 0.5, 0.5]], [7], [3, 4, 7, 5], [0], [1, 1, 1, 1], protocol="single_shot",
                   max_rank=4, trials=2)
    np.testing.assert_allclose(got["cmc"], [0, 0, 1, 1])


def test_single_shot_is_deterministic_per_seed_and_varies_across_seeds():
    problem = random_problem(5, levels=1000)
    runs = [evaluate(*problem, protocol="single_shot", max_rank=5, trials=3, seed=s)["cmc"] for s in (7, 7, 8)]
    np.testing.assert_array_equal(runs[0], runs[1])
    assert not np.array_equal(runs[0], runs[2])


def test_single_shot_equals_market_when_gallery_has_one_image_per_identity():
    rng = np.random.default_rng(4)
    g_pids = rng.permutation(30)
    q_pids = rng.integers(0, 30, 12)
    distmat = rng.random((12, 30))
    cams = dict(q_camids=np.zeros(12, int), g_camids=np.ones(30, int))
    single = evaluate(distmat, q_pids, g_pids, protocol="single_shot", max_rank=30, **cams)
    market = evaluate(distmat, q_pids, g_pids, protocol="market1501", max_rank=30, **cams)
    np.testing.assert_allclose(single["cmc"], market["cmc"])
    assert single["mAP"] == pytest.approx(market["mAP"])


@pytest.mark.parametrize("metric", ["euclidean", "cosine"])
@pytest.mark.parametrize("protocol", ["market1501", "single_shot"])
def test_features_path_equals_dense_path(metric, protocol):
    rng = np.random.default_rng(6)
    _, q_pids, g_pids, q_camids, g_camids = random_problem(6)
    centres = rng.normal(size=(8, 16))
    query = centres[q_pids] + rng.normal(scale=0.8, size=(len(q_pids), 16))
    gallery = centres[g_pids] + rng.normal(scale=0.8, size=(len(g_pids), 16))
    labels = (q_pids, g_pids, q_camids, g_camids)
    dense = evaluate(pairwise_distance(query, gallery, metric), *labels, protocol=protocol, max_rank=20)
    chunked = evaluate_features(query, gallery, *labels, metric=metric, protocol=protocol, max_rank=20,
                                chunk_size=4, progress=True)
    np.testing.assert_allclose(chunked["cmc"], dense["cmc"])
    assert chunked["mAP"] == pytest.approx(dense["mAP"])
    assert chunked["mINP"] == pytest.approx(dense["mINP"])
    assert chunked["num_queries"] == dense["num_queries"]


@pytest.mark.parametrize("metric", knn.METRICS)
def test_knn_equals_a_numpy_sort_of_the_dense_distances(metric):
    rng = np.random.default_rng(7)
    reference_rows = rng.normal(size=(37, 5))  # float64: converted once
    query = rng.normal(size=(11, 5))
    for a, b in ((query, reference_rows), (reference_rows, reference_rows)):
        dists, idx = knn.knn(a, b, k=6, metric=metric, chunk_size=4)
        if metric == "cosine":
            unit = [x / np.linalg.norm(x, axis=1, keepdims=True) for x in (a, b)]
            dense = 1.0 - unit[0] @ unit[1].T
        else:
            dense = ((a[:, None] - b[None]) ** 2).sum(-1)
            dense = np.sqrt(dense) if metric == "euclidean" else dense
        np.testing.assert_array_equal(idx, np.argsort(dense, axis=1, kind="stable")[:, :6])
        # squared for euclidean: a row's distance to itself is float32 cancellation noise, ~1e-3 after the root
        power = 2 if metric == "euclidean" else 1
        np.testing.assert_allclose(dists ** power, np.sort(dense, axis=1)[:, :6] ** power, atol=1e-5)
    with pytest.raises(ValueError, match="k=38 must be between 1 and the number of reference rows"):
        knn.knn(query, reference_rows, k=38)


def test_a_set_against_itself_is_converted_and_normalised_once():
    x = np.random.default_rng(8).normal(size=(9, 4))  # at 100K x 2048 a second copy is another 800 MB
    a, b = knn._check(x, x, "cosine")
    assert a is b
    np.testing.assert_allclose(np.linalg.norm(a, axis=1), 1.0, rtol=1e-6)
    a, b = knn._check(x, x.copy(), "cosine")
    assert a is not b


@pytest.mark.parametrize("kwargs,message", [
    (dict(distmat=np.zeros((2, 6))), "distmat has shape"),
    (dict(distmat=[0.1, 0.2]), "distmat must be a 2-D"),
    (dict(distmat=[[0.1, np.nan, 0.3, 0.4, 0.5, 0.6]]), "NaN"),
    (dict(g_camids=[0, 1]), "g_camids has 2 entries"),
    (dict(q_camids=[0, 0]), "q_camids has 2 entries"),
    (dict(q_pids=[1.5]), "q_pids must hold integers"),
    (dict(g_pids=[[2, 1, 1, 3, 1, 4]]), "g_pids must be 1-D"),
    (dict(protocol="cuhk"), "unknown protocol 'cuhk'"),
    (dict(max_rank=0), "max_rank"),
    (dict(protocol="single_shot", trials=0), "trials"),
])
def test_bad_inputs_name_the_argument(kwargs, message):
    with pytest.raises(ValueError, match=message):
        evaluate(**{**HAND, **kwargs})


def test_bad_feature_inputs_name_the_argument():
    labels = ([1, 2], [1, 2, 3], [0, 0], [1, 1, 1])
    with pytest.raises(ValueError, match="query_features has 3 rows"):
        evaluate_features(np.zeros((3, 4)), np.zeros((3, 4)), *labels)
    with pytest.raises(ValueError, match="gallery_features has 2 rows"):
        evaluate_features(np.zeros((2, 4)), np.zeros((2, 4)), *labels)
    with pytest.raises(ValueError, match="unknown metric"):
        evaluate_features(np.zeros((2, 4)), np.zeros((3, 4)), *labels, metric="hamming")


def test_format_results_reports_percentages():
    text = format_results(evaluate(**HAND, max_rank=5), ranks=(1, 5, 10))
    assert "mAP:  50.0%" in text and "Rank-1   0.0%" in text and "Rank-5   100.0%" in text
    assert "Rank-10" not in text and "1 queries evaluated, 0 skipped" in text


def test_evaluation_benchmark_writes_results(tmp_path):
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    subprocess.run([sys.executable, "-m", "benchmarks.bench_evaluation", "--gallery_sizes=60,90", "--num_queries=12",
                    "--feature_dim=8", "--dense_max_gallery=60", f"--out_dir={tmp_path}"], cwd=root, check=True,
                   capture_output=True)
    rows = json.loads((tmp_path / "evaluation.json").read_text())["rows"]
    assert [(r["path"], r["num_gallery"]) for r in rows] == [("features", 60), ("dense", 60), ("features", 90)]
    assert rows[0]["mAP"] == pytest.approx(rows[1]["mAP"]) and all(r["seconds"] > 0 for r in rows)
    assert "| path | num_queries | num_gallery |" in (tmp_path / "evaluation.md").read_text()


def test_benchmark_runner_selects_by_topic():
    available = benchmarks_run.discover()
    assert "evaluation" in available
    assert benchmarks_run.select(available, ["bench_evaluation"]) == ["evaluation"]
    assert benchmarks_run.select(available, []) == available
    with pytest.raises(ValueError, match="unknown benchmarks"):
        benchmarks_run.select(available, ["nope"])
