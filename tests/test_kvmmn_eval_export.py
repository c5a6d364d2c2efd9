"""kvmmn/retrieval.py and kvmmn-eval: shortlist re-scoring and the results JSON (the SavedModel export:
tests/test_serving.py)."""
import json
import os
import subprocess
import sys

import numpy as np
import pytest

from data import datasets
from data.evaluation import evaluate
from kvmmn.demo import run_demo
from kvmmn.embedding import embed_memories
from kvmmn.model import KVMMNConfig
from kvmmn.pretrain import PretrainConfig
from kvmmn.retrieval import (GALLERY_FIELDS, QUERY_FIELDS, ShortlistDistances, evaluate_checkpoint, evaluate_record,
                             parse_shortlist, ranking_distances)
from kvmmn.training import TrainConfig, load_trained_model, read_run_config, train

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TINY = KVMMNConfig(backbone="tiny", image_size=(64, 32), feature_dim=16, num_heads=2, key_dim=4, value_dim=4,
                   score_hidden_units=8, seed=2)
SYNTHETIC = dict(num_identities=16, num_cameras=3, min_cameras=2, max_images_per_camera=3, num_distractors=4,
                 num_junk=1, height=64, width=32)


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """A 2-step run on a tiny synthetic dataset: (train_dir, model, record); the dataset root is record's."""
    root = str(tmp_path_factory.mktemp("synthetic"))
    train_dir = str(tmp_path_factory.mktemp("run"))
    config = TrainConfig(train_dir=train_dir, data_root=root, dataset_options=SYNTHETIC, model=TINY, gallery_size=4,
                         batch_size=4, max_steps=2, num_samples=0, num_neighbors=10, show_progress=False)
    train(config)
    model = load_trained_model(train_dir)[0]
    return train_dir, model, config.load_record()


def labels(record):
    return dict(q_pids=[s.pid for s in record.query], g_pids=[s.pid for s in record.gallery],
                q_camids=[s.camid for s in record.query], g_camids=[s.camid for s in record.gallery])


def test_shortlist_is_rescored_first_and_the_rest_follows_in_l2_order(run):
    _, model, record = run
    query = embed_memories(model, record.query, QUERY_FIELDS)
    gallery = embed_memories(model, record.gallery, GALLERY_FIELDS)
    k = 5
    ranks = ranking_distances(model, query, gallery, shortlist=k, pair_batch_size=7)
    scores = np.asarray(model.score(query, gallery))
    l2 = np.linalg.norm(query["pooled"][:, None] - gallery["pooled"][None], axis=-1)
    for q in range(len(ranks)):
        ranking = np.argsort(ranks[q])
        assert sorted(ranks[q]) == list(range(len(gallery["pooled"])))
        shortlist = np.argsort(l2[q], kind="stable")[:k]
        assert set(ranking[:k]) == set(shortlist)
        assert np.all(np.diff(scores[q, ranking[:k]]) <= 1e-6)  # by decreasing score
        assert np.all(np.diff(l2[q, ranking[k:]]) >= -1e-5)  # the rest by increasing L2 distance
        assert l2[q, ranking[k:]].min() >= l2[q, shortlist].max() - 1e-5


@pytest.mark.parametrize("shortlist", [3, None])
def test_ranking_comes_block_by_block_equal_to_the_dense_matrix(run, shortlist, monkeypatch):
    _, model, record = run
    query = embed_memories(model, record.query, QUERY_FIELDS)
    gallery = embed_memories(model, record.gallery, GALLERY_FIELDS)
    dense = ranking_distances(model, query, gallery, shortlist=shortlist, pair_batch_size=5)
    num_query, num_gallery = dense.shape
    distances = ShortlistDistances(model, query, gallery, shortlist, pair_batch_size=5)
    for block_rows in (1, 2, 3, num_query):
        covered = 0
        for start, stop, block in distances.iter_blocks(block_rows):
            assert start == covered and block.shape == (stop - start, num_gallery) and stop - start <= block_rows
            np.testing.assert_array_equal(block, dense[start:stop])
            covered = stop
        assert covered == num_query
    # evaluate_record evaluates those blocks as they come: never more than chunk_size rows, never the dense matrix
    shapes = []
    iter_blocks = ShortlistDistances.iter_blocks

    def spy(self, chunk_size=None, verbose=0):
        for start, stop, block in iter_blocks(self, chunk_size, verbose):
            shapes.append(block.shape)
            yield start, stop, block

    def refuse(*args, **kwargs):
        raise AssertionError("the dense [Q, G] matrix was built")

    monkeypatch.setattr(ShortlistDistances, "iter_blocks", spy)
    monkeypatch.setattr(ShortlistDistances, "dense", refuse)
    result = evaluate_record(model, record, shortlist=shortlist, pair_batch_size=5, chunk_size=2)["kvmmn"]
    assert shapes and all(rows <= 2 and width == num_gallery for rows, width in shapes)
    assert sum(rows for rows, _ in shapes) == num_query
    expected = evaluate(dense, protocol=record.protocol, **labels(record))
    np.testing.assert_array_equal(result["cmc"], expected["cmc"])
    assert (result["mAP"], result["mINP"], result["num_queries"]) == (expected["mAP"], expected["mINP"],
                                                                      expected["num_queries"])


def test_shortlist_all_equals_exhaustive_scoring(run):
    _, model, record = run
    exhaustive = evaluate_record(model, record, shortlist=None, pair_batch_size=64)["kvmmn"]
    query = embed_memories(model, record.query, QUERY_FIELDS)
    gallery = embed_memories(model, record.gallery, GALLERY_FIELDS)
    direct = evaluate(-np.asarray(model.score(query, gallery)), protocol=record.protocol, **labels(record))
    np.testing.assert_allclose(exhaustive["cmc"], direct["cmc"])
    assert exhaustive["mAP"] == pytest.approx(direct["mAP"]) and exhaustive["mINP"] == pytest.approx(direct["mINP"])
    # a shortlist as long as the gallery is the exhaustive ranking too
    assert evaluate_record(model, record, shortlist=10_000)["kvmmn"]["mAP"] == pytest.approx(direct["mAP"])


def test_eval_binary_writes_results_json(run, tmp_path):
    train_dir, _, _ = run
    output = tmp_path / "results.json"
    flagfile = tmp_path / "eval.flags"
    flagfile.write_text(f"--checkpoint={train_dir}\n--shortlist=4\n--output={output}\n--progress=false\n")
    done = subprocess.run([sys.executable, "-m", "kvmmn.cli.evaluate", f"--flagfile={flagfile}"], cwd=REPO,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    results = json.loads(output.read_text())
    assert results["dataset"] == "synthetic" and results["shortlist"] == 4
    assert results["splits"]["default"]["step"] == 2
    assert results["params"] == {  # every setting used, the run's dataset, root and options resolved
        "checkpoint": train_dir, "dataset": "synthetic", "data_root": read_run_config(train_dir).data_root,
        "splits": [None], "dataset_options": SYNTHETIC, "shortlist": 4, "batch_size": 64, "pair_batch_size": 1024, "max_rank": 50, "scratch_dir": None}
    for method in ("kvmmn", "pooled_l2"):
        mean = results["mean"][method]
        assert len(mean["cmc"]) == 50 and 0.0 < mean["mAP"] <= 1.0 and mean["num_queries"] > 0
        assert mean["rank-1"] == mean["cmc"][0] and np.all(np.diff(mean["cmc"]) >= 0)
    assert "rank-1" in done.stdout and "pooled_l2" in done.stdout


def test_evaluation_refuses_ambiguous_or_bad_requests(run):
    train_dir, _, _ = run
    with pytest.raises(ValueError, match="each with its own trained model"):
        evaluate_checkpoint(train_dir, dataset="cuhk01")
    with pytest.raises(ValueError, match="positive integer or 'all'"):
        parse_shortlist("0")
    assert parse_shortlist("all") is None and parse_shortlist("25") == 25
    with pytest.raises(datasets.DatasetError, match="unknown dataset"):
        evaluate_checkpoint(train_dir, dataset="market")


def test_demo_reports_kvmmn_beside_pooled_l2_and_chance(run, tmp_path, capsys):
    _, _, record = run
    root = os.path.dirname(os.path.dirname(record.train[0].path))
    out = run_demo(root, steps=2, train_dir=str(tmp_path / "demo"), show_progress=False,
                   pretrain=PretrainConfig(steps=2), dataset_options=SYNTHETIC)
    assert list(out["results"]) == ["kvmmn", "pooled_l2", "random"]
    for result in out["results"].values():
        assert 0.0 < result["mAP"] <= 1.0 and result["num_queries"] == len(record.query)
    printed = capsys.readouterr().out
    assert "| KVM-MN |" in printed and "2 set-wise steps on the synthetic dataset" in printed
    assert load_trained_model(out["train_dir"])[3] == 2


def test_demo_averages_its_training_seeds(run, tmp_path, capsys):
    """`seeds`: one run per seed in train_dir/seed_<s>, seeded (other seeds, other numbers), and the table is
    their mean; the first seed's run is the one returned."""
    _, _, record = run
    root = os.path.dirname(os.path.dirname(record.train[0].path))
    out = run_demo(root, steps=3, train_dir=str(tmp_path / "demo"), show_progress=False,
                   pretrain=PretrainConfig(steps=2), seeds=(0, 3), dataset_options=SYNTHETIC)
    assert sorted(out["per_seed"]) == [0, 3]
    for method in ("kvmmn", "pooled_l2"):
        per_seed = [out["per_seed"][s][method]["mAP"] for s in (0, 3)]
        assert per_seed[0] != per_seed[1]  # the seed reaches the initialisation and the sampling
        assert out["results"][method]["mAP"] == pytest.approx(np.mean(per_seed))
        assert out["results"][method]["num_queries"] == len(record.query)
    assert out["train_dir"] == str(tmp_path / "demo" / "seed_0")
    assert load_trained_model(str(tmp_path / "demo" / "seed_3"))[1].seed == 3
    assert "Mean over training seeds 0, 3" in capsys.readouterr().out
    with pytest.raises(ValueError, match="distinct training seeds"):
        run_demo(root, steps=1, seeds=(1, 1), dataset_options=SYNTHETIC)
