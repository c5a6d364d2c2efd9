"""No silent no-ops: on a gallery of one image per identity (N/C = 1) every re-ranker still re-ranks and says why
its neighbourhood is not N/C, GNN's k2 follows a small k1, and every result JSON holds every parameter used."""
import json

import keras
import numpy as np
import pytest

from acp import acp_rerank
from acp.cli import rerank as rerank_cli
from engine import cli
from acp import model as acp_model
from features import feature_file as feature_files
from rerank import METHODS, neighbourhood, registry
from rerank import runner as rerank_runner

TINY = dict(num_layers=1, memory_size=2, num_heads=2, memory_dim=4, model_dim=8, fusion_dropout=0.0,
            transformer_dropout=0.0)
NUM_IDS, DIM = 30, 16


def single_shot(seed=0) -> feature_files.FeatureSet:
    """One query (camera 0) and one gallery image (camera 1) per identity: N/C = 1, as in CUHK03's protocol."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(NUM_IDS, DIM))
    embedding = np.concatenate([centres + 0.6 * rng.normal(size=centres.shape) for _ in range(2)])
    pid = np.tile(np.arange(NUM_IDS), 2)
    return feature_files.FeatureSet(embedding=embedding.astype(np.float32), pid=pid, camid=np.repeat([0, 1], NUM_IDS),
                                    split=np.repeat([1, 2], NUM_IDS), dataset="cuhk03_labeled", protocol="single_shot",
                                    origin="single_shot")


def unchanged_distances(data):
    """What a re-ranker that changes no embedding returns: Euclidean distances of the unit embeddings."""
    unit = data.embedding / np.linalg.norm(data.embedding, axis=1, keepdims=True)
    query, gallery = unit[:NUM_IDS], unit[NUM_IDS:]
    return np.sqrt(np.maximum(((query[:, None] - gallery[None]) ** 2).sum(-1), 0.0))


def all_params(method):
    return set(rerank_runner.default_params(method))


@pytest.mark.parametrize("method", sorted(METHODS))
def test_table_iv_neighbourhood_on_a_single_shot_gallery_re_ranks_and_says_why(method, caplog):
    data = single_shot()
    outcome = rerank_runner.evaluate_method(data, method, table_iv_neighbourhood=True, top_k=NUM_IDS)
    params = outcome["params"]
    assert set(params) == all_params(method)  # every parameter, defaults included
    for name in registry.get(method).first_order:
        assert params[name] == neighbourhood.MIN_K1 == 2
        assert any(note.startswith(f"{name}=2: N/C of the gallery is 1.00") for note in outcome["notes"])
        assert f"{name}=2: N/C" in caplog.text  # logged, not only stored
    if method == "gnn":  # the default k2 = 7 > k1 = 2 used to crash ("k2=7 is out of range")
        assert params["k2"] == 2 and any(n.startswith("k2=2: the default k2=7 exceeds k1=2") for n in outcome["notes"])
    assert outcome["table_iv_neighbourhood"] is True and 0.0 < outcome["mAP"] <= 1.0


def test_expansions_on_a_single_shot_gallery_differ_from_the_baseline():
    data = single_shot()
    baseline = unchanged_distances(data)
    for method in ("aqe", "alpha_qe"):
        params, _ = rerank_runner.resolve_params(method, {}, data.gallery.pid, table_iv=True)
        result, _ = rerank_runner.run_method(data.query, data.gallery, method, params)
        assert not np.allclose(result.dense(), baseline, atol=1e-4), method
    # a given k of 1 is honoured, and flagged as what it is: the baseline
    params, notes = rerank_runner.resolve_params("aqe", {"k": 1}, data.gallery.pid, table_iv=True)
    assert params["k"] == 1 and any("returns the baseline" in note for note in notes)
    result, _ = rerank_runner.run_method(data.query, data.gallery, "aqe", params)
    np.testing.assert_allclose(result.dense(), baseline, atol=1e-4)


def test_acp_on_a_single_shot_gallery_re_ranks_and_records_every_parameter():
    data = single_shot()
    keras.utils.set_random_seed(1)
    model = acp_model.build_acp(acp_model.make_config("basic", **TINY, use_fusion=False, embedding_dim=DIM))
    outcome = rerank_runner.evaluate_method(data, "acp", model=model, top_k=NUM_IDS)
    assert outcome["params"] == {"k1": 2, "k2": 2, "batch_size": acp_rerank.DEFAULT_BATCH_SIZE,
                                 "chunk_size": 512, "metric": "cosine"}
    assert [note.split(":")[0] for note in outcome["notes"]] == ["k1=2", "k2=2"]
    distances, indices = outcome["top"]
    rows = np.arange(NUM_IDS)[:, None]
    baseline = unchanged_distances(data)
    assert not np.allclose(distances, baseline[rows, indices], atol=1e-4)  # Eq. 1 over 2 neighbours: re-ranked


def parse(argv):
    cli.parse(rerank_cli.FLAGS, argv)


def test_rerank_json_holds_every_parameter_and_the_notes(tmp_path, capsys):
    path = tmp_path / "single_shot.npz"
    feature_files.save_features(str(path), single_shot())
    output = tmp_path / "gnn.json"
    try:
        parse(["acp-rerank", f"--features={path}", "--method=gnn", "--table_iv_neighbourhood", "--verbose=0",
               f"--output_json={output}", "--max_rank=5", "--ranks=1"])
        rerank_cli.main(["acp-rerank"])
    finally:
        rerank_cli.FLAGS.unparse_flags()
    outcome = json.loads(output.read_text())
    assert outcome["params"] == {"k1": 2, "k2": 2, "fallback": True, "lambda_value": 0.0, "chunk_size": 512}
    assert outcome["protocol"] == "single_shot" and outcome["table_iv_neighbourhood"] is True
    printed = capsys.readouterr().out
    assert "note: k1=2: N/C of the gallery is 1.00" in printed and "note: k2=2: the default k2=7" in printed
    assert [line for line in printed.splitlines() if line.startswith("note:")] == [
        f"note: {note}" for note in outcome["notes"]]
