"""ACP re-ranking (acp.acp_rerank, Eq. 1) against a dense step-by-step reference, and the acp-train -> acp-rerank
binaries end to end on a small feature file, with their errors on bad input."""
import json
import sys

import keras
import numpy as np
import pytest

from acp import acp_rerank, demo
from acp import checkpoint as acp_checkpoint
from acp import model as acp_model
from acp.cli import rerank as rerank_cli
from acp.cli import train as acp_train
from engine import cli
from features import feature_file as feature_files
from rerank import METHODS, evaluate_reranked, neighbourhood
from rerank import runner as rerank_runner
from rerank.evaluation import evaluate_features
from rerank.synthetic import clustered_embeddings

TINY = dict(num_layers=1, memory_size=2, num_heads=2, memory_dim=4, model_dim=8, fusion_dropout=0.0,
            transformer_dropout=0.0)


def unit(x):
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def dense_reference(query, gallery, blocks, model, k1, k2):
    """Eq. 1 written out: N x N numpy distances (float64), a stable sort per row, ACP on all sequences at once,
    sum_j s_j f_j row by row."""
    everything = np.concatenate([query, gallery]).astype(np.float64)
    cosine = 1.0 - unit(everything) @ unit(everything).T
    sequences = []
    for i in range(len(everything)):
        others = [j for j in np.argsort(cosine[i], kind="stable") if j != i]
        sequences.append([i] + others[:k1 - 1])
    sequences = np.array(sequences)
    inputs = {name: table[sequences] for name, table in blocks.items()}  # every sequence in one batch
    s = keras.ops.convert_to_numpy(model(acp_model.make_inputs(model, inputs, k2), training=False))
    expanded = unit(np.array([(s[i, :, None] * unit(everything)[row]).sum(axis=0)
                              for i, row in enumerate(sequences)]))
    q, g = expanded[:len(query)], expanded[len(query):]
    return np.sqrt(np.maximum(((q[:, None] - g[None]) ** 2).sum(-1), 0.0))


def test_acp_reranking_equals_the_dense_step_by_step_reference():
    data = clustered_embeddings(60, dim=16, images_per_identity=5, noise=1.0, seed=2)
    rng = np.random.default_rng(0)
    everything = np.concatenate([data.query, data.gallery])
    blocks = {"f3": everything[:, :6] + rng.normal(size=(60, 6)), "f4": rng.normal(size=(60, 8)),
              "f5": everything[:, 6:16]}
    keras.utils.set_random_seed(3)
    model = acp_model.build_acp(acp_model.make_config("basic", **TINY, block_dims=(6, 8, 10)))
    q = len(data.query)
    split = [{name: table[:q] for name, table in blocks.items()}, {name: table[q:] for name, table in blocks.items()}]
    result = acp_rerank.acp_rerank(data.query, data.gallery, model, k1=7, k2=3, query_inputs=split[0],
                                   gallery_inputs=split[1], batch_size=5, chunk_size=9)
    reference = dense_reference(data.query, data.gallery, blocks, model, 7, 3)
    np.testing.assert_allclose(result.dense() ** 2, reference ** 2, atol=2e-5)  # squared: see below
    # the predicted weights are ACP's, not uniform: AQE over the same neighbourhood ranks differently
    assert not np.allclose(result.dense(), np.asarray(METHODS["aqe"](data.query, data.gallery, k=7)), atol=1e-3)


def test_reranking_twice_traces_acp_once_and_reads_the_new_features():
    keras.utils.set_random_seed(4)
    model = acp_model.build_acp(acp_model.make_config("basic", **TINY, use_fusion=False, embedding_dim=16))
    results = []
    for seed in (5, 6):  # two splits of different sizes, as the experiments' tables re-rank them
        data = clustered_embeddings(40 + 10 * seed, dim=16, images_per_identity=5, noise=1.0, seed=seed)
        results.append((data, acp_rerank.acp_rerank(data.query, data.gallery, model, k1=5, k2=2).dense()))
    predictor = acp_rerank.sequence_predictor(model, (acp_model.EMBEDDING_NAME,), 2)
    assert predictor.experimental_get_tracing_count() == 1
    data, second = results[1]
    everything = np.concatenate([data.query, data.gallery])
    reference = dense_reference(data.query, data.gallery, {acp_model.EMBEDDING_NAME: everything}, model, 5, 2)
    # squared: near-duplicates sit at float32 cancellation level (|a|^2 + |b|^2 - 2ab), which the square root
    # inflates to ~1e-4 whatever the matmul kernel
    np.testing.assert_allclose(second ** 2, reference ** 2, atol=2e-5)


def test_default_k1_is_gallery_images_per_identity():
    assert neighbourhood.default_k1([1, 1, 1, 2, 2, 3]) == 2
    assert neighbourhood.default_k1([5] * 9 + [6] * 3 + [7] * 4) == 5  # 16 / 3 = 5.33
    # one image per identity: N/C = 1 would return the baseline unchanged, so k1 has a floor of 2, and says so
    assert neighbourhood.default_k1([4]) == neighbourhood.default_k1([1, 2, 3, 3]) == neighbourhood.MIN_K1 == 2
    assert "k1=2" in neighbourhood.k1_floor_note("k1", [4, 5]) and neighbourhood.k1_floor_note("k1", [4, 4]) is None
    with pytest.raises(ValueError, match="empty gallery"):
        neighbourhood.default_k1([])


# ----------------------------------------------------------------------------------------------- the binaries
def write_feature_file(path, seed=0, dataset="market1501", **changes):
    """Train, query and gallery rows with 512/1024/2048-wide f3/f4/f5 derived from clustered embeddings."""
    train = clustered_embeddings(60, dim=32, images_per_identity=6, noise=1.2, seed=seed + 1)
    test = clustered_embeddings(96, dim=32, images_per_identity=6, noise=1.2, seed=seed)
    embedding = np.concatenate([train.query, train.gallery, test.query, test.gallery])
    n = len(embedding)
    rng = np.random.default_rng(seed)
    widen = {name: (embedding @ rng.normal(size=(32, width)) / 6.0).astype(np.float32)
             for name, width in feature_files.RESNET50_BLOCK_WIDTHS.items()}
    fields = dict(embedding=embedding, pid=np.concatenate([train.q_pids, train.g_pids, test.q_pids, test.g_pids]),
                  camid=np.concatenate([train.q_camids, train.g_camids, test.q_camids, test.g_camids]),
                  split=np.repeat([0, 1, 2], [60, len(test.query), len(test.gallery)]),
                  path=np.array([f"img_{i}.jpg" for i in range(n)]), dataset=dataset, protocol="market1501", **widen)
    fields.update(changes)
    feature_files.save_features(str(path), feature_files.FeatureSet(**fields))
    return str(path)


def run_binary(main, argv):
    """Parse `argv` into the flags of `main`'s binary module, then run it."""
    fv = sys.modules[main.__module__].FLAGS
    try:
        cli.parse(fv, argv)
        main([argv[0]])
    finally:
        fv.unparse_flags()


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A feature file and a tiny ACP trained on it for a few steps by `acp-train`."""
    root = tmp_path_factory.mktemp("acp_cli")
    feature_file = write_feature_file(root / "features.npz")
    train_dir = str(root / "acp")
    overrides = [f"--override={name}={value}" for name, value in TINY.items()]
    run_binary(acp_train.main, [
        "acp-train", f"--features={feature_file}", f"--train_dir={train_dir}", "--preset=basic", *overrides,
        "--batch_size=8", "--learning_rate=2e-3", "--weight_decay=5e-4", "--nodecoupled_weight_decay",
        "--epochs=1", "--max_steps=4", "--warmup_epochs=1", "--warmup_factor=0.1", "--num_neighbours=30",
        "--sequence_length=8", "--num_false=4", "--refinement_length=3", "--metric=cosine", "--chunk_size=64",
        "--strategy=mirrored", "--mixed_precision=float32", "--noxla", "--seed=0", "--checkpoint_every=2",
        "--log_every=2", "--keep_checkpoints=2"])
    return root, feature_file, train_dir


def direct_metrics(data, method, params, max_rank):
    """mAP / CMC of calling the classic re-ranker `method` of the library directly, under Market-1501's protocol."""
    result = METHODS[method](data.query.embedding, data.gallery.embedding, **params)
    return evaluate_reranked(result, data.query.pid, data.gallery.pid, data.query.camid, data.gallery.camid,
                             protocol="market1501", max_rank=max_rank)


def assert_same_metrics(outcome, expected):
    assert outcome["mAP"] == pytest.approx(float(expected["mAP"]), abs=1e-6), outcome["method"]
    np.testing.assert_allclose(outcome["cmc"], expected["cmc"][:len(outcome["cmc"])], atol=1e-6)


RERANK_FLAGS = ["--metric=cosine", "--max_rank=20", "--ranks=1,5", "--verbose=0", "--notable_iv_neighbourhood",
                "--top_k=100"]


def test_train_then_rerank_every_method_end_to_end(trained, tmp_path):
    root, feature_file, train_dir = trained
    preset, config = acp_checkpoint.load_config(train_dir)
    assert preset == "basic" and config == acp_model.make_config("basic", **TINY)
    data = feature_files.load_features(feature_file)
    query, gallery = data.query, data.gallery
    outcomes = {}
    for method in rerank_runner.method_names():
        output = tmp_path / f"{method}.json"
        extra = [f"--checkpoint={train_dir}"] if method == "acp" else []
        if method in ("ecn",):
            extra.append("--param=k=10")
        run_binary(rerank_cli.main, ["acp-rerank", f"--features={feature_file}", f"--method={method}",
                                     f"--output_json={output}", *RERANK_FLAGS, *extra])
        outcomes[method] = json.loads(output.read_text())
    for method, outcome in outcomes.items():
        assert outcome["method"] == method and outcome["protocol"] == "market1501"
        assert outcome["num_query"] == len(query) and outcome["num_gallery"] == len(gallery)
        assert outcome["seconds_rerank"] >= 0 and outcome["peak_rss_mb"] > 0
        if method in METHODS:  # what the binary reports is the library's result with the parameters it reports
            assert_same_metrics(outcome, direct_metrics(data, method, outcome["params"], max_rank=20))
        if method not in ("none", "baseline"):  # clustered data: every re-ranker moves the baseline's mAP
            assert outcome["mAP"] != pytest.approx(outcomes["none"]["mAP"], abs=1e-4), method
    expected = evaluate_features(query.embedding, gallery.embedding, query.pid, gallery.pid, query.camid,
                                 gallery.camid, metric="cosine", max_rank=20)
    assert outcomes["none"]["mAP"] == pytest.approx(expected["mAP"]) == outcomes["baseline"]["mAP"]
    # every parameter as used, defaults included; ACP's default k2 = 6 above k1 = N/C = 5 is lowered, and says so
    assert outcomes["acp"]["params"] == {"k1": 5, "k2": 5, "batch_size": 256, "chunk_size": 512, "metric": "cosine"}
    assert neighbourhood.default_k1(gallery.pid) == 5
    assert [note.split(":")[0] for note in outcomes["acp"]["notes"]] == ["k2=5"]
    assert outcomes["ecn"]["params"] == {"k": 10, "t": 3, "q": 8, "fallback": True, "chunk_size": 512}
    assert outcomes["ecn"]["notes"] == [] and outcomes["none"]["params"] == {"metric": "cosine"}
    # re-ranking changes the ranking (clustered data: the expansions gain over the baseline)
    assert outcomes["alpha_qe"]["mAP"] > outcomes["none"]["mAP"]


def test_top_list_table_iv_neighbourhood_and_protocol_override(trained, tmp_path):
    _, feature_file, train_dir = trained
    top = tmp_path / "top.npz"
    output = tmp_path / "out.json"
    run_binary(rerank_cli.main, ["acp-rerank", f"--features={feature_file}", "--method=aqe", f"--top_list={top}",
                                 f"--output_json={output}", "--protocol=vehicleid", "--table_iv_neighbourhood",
                                 *[f for f in RERANK_FLAGS if "table_iv" not in f]])
    outcome = json.loads(output.read_text())
    assert outcome["protocol"] == "vehicleid" and outcome["params"] == {"k": 5, "expand": "normalized",
                                                                         "chunk_size": 512}
    data = feature_files.load_features(feature_file)
    with np.load(top) as lists:
        capped = (len(data.query), len(data.gallery))  # --top_k=100 capped at the 80 gallery items
        assert lists["gallery"].shape == lists["distance"].shape == lists["gallery_path"].shape == capped
        assert (np.diff(lists["distance"], axis=1) >= 0).all()
        np.testing.assert_array_equal(lists["gallery_path"], data.gallery.path[lists["gallery"]])
        np.testing.assert_array_equal(lists["query_pid"], data.query.pid)


def test_bad_inputs_give_clear_errors(trained, tmp_path):
    root, feature_file, train_dir = trained
    data = feature_files.load_features(feature_file)
    model, _, _ = acp_checkpoint.restore_model(train_dir)
    size = len(data.query) + len(data.gallery)
    with pytest.raises(ValueError, match=f"k1={size + 1} is out of range: it must be between 1 and {size}"):
        rerank_runner.evaluate_method(data, "acp", {"k1": size + 1}, model)
    with pytest.raises(ValueError, match=r"unknown parameter\(s\) \['alpha'\]"):
        rerank_runner.evaluate_method(data, "k_reciprocal", {"alpha": 3})
    with pytest.raises(ValueError, match="needs a trained model"):
        rerank_runner.evaluate_method(data, "acp")
    with pytest.raises(cli.UserError, match="needs --checkpoint"):
        run_binary(rerank_cli.main, ["acp-rerank", f"--features={feature_file}", "--method=acp", *RERANK_FLAGS])
    # a checkpoint of another preset, and another preset than the one asked for, name both
    with pytest.raises(acp_checkpoint.CheckpointMismatchError, match=r"holds ACP-basic with .*not ACP-xl"):
        acp_checkpoint.restore_model(train_dir, preset="xl")
    with pytest.raises(acp_checkpoint.CheckpointMismatchError, match=r"holds ACP-basic .* asks for ACP-xl"):
        acp_checkpoint.save_config(train_dir, "xl", acp_model.make_config("xl"))
    # non-finite features: refused by the file reader and by the library
    bad = data.query.embedding.copy()
    bad[3, 1] = np.nan
    with pytest.raises(feature_files.FeatureFileError, match="'embedding' holds NaN"):
        write_feature_file(tmp_path / "nan.npz", embedding=np.concatenate(
            [data.train.embedding, bad, data.gallery.embedding]))
    with pytest.raises(ValueError, match="query row 3 has a non-finite value"):
        acp_rerank.acp_rerank(bad, data.gallery.embedding, model, k1=3,
                              query_inputs={n: getattr(data.query, n) for n in ("f3", "f4", "f5")},
                              gallery_inputs={n: getattr(data.gallery, n) for n in ("f3", "f4", "f5")})
    # mismatched dimensions: an embedding-only model of another width, a file without f3/f4/f5
    narrow = acp_model.build_acp(acp_model.make_config("basic", **TINY, use_fusion=False, embedding_dim=12))
    with pytest.raises(ValueError, match="'embedding' has width 32, but the ACP model expects 12"):
        acp_rerank.acp_rerank(data.query.embedding, data.gallery.embedding, narrow, k1=3)
    plain = feature_files.FeatureSet(embedding=data.embedding, pid=data.pid, camid=data.camid, split=data.split,
                                origin="plain.npz")
    with pytest.raises(ValueError, match="plain.npz: the ACP model uses multi-block fusion, but the file has no f3"):
        acp_rerank.rerank_feature_sets(plain.query, plain.gallery, model)
    with pytest.raises(ValueError, match="query embeddings have width 32 but gallery embeddings have width 31"):
        acp_rerank.acp_rerank(data.query.embedding, data.gallery.embedding[:, :31], narrow, k1=3)


def test_demo_comparison_table(trained):
    _, feature_file, train_dir = trained
    model, _, _ = acp_checkpoint.restore_model(train_dir)
    results = demo.compare(feature_files.load_features(feature_file), model)
    assert list(results) == list(demo.DEMO_METHODS)
    outcomes = list(results.values())
    assert [o["method"] for o in outcomes] == list(demo.DEMO_METHODS)
    assert all(o["params"].get("k", o["params"].get("k1", 5)) == 5 for o in outcomes)  # Table IV: N/C everywhere
    table = demo.format_table(results).splitlines()
    assert table[0].split()[:3] == ["method", "mAP", "rank-1"]
    assert [line.split()[0] for line in table[1:]] == ["baseline", "AQE", "alpha-QE", "k-reciprocal", "ACP"]
    assert table[1].split()[1] == f"{100 * outcomes[0]['mAP']:.1f}%"
    data = feature_files.load_features(feature_file)
    baseline = outcomes[0]["mAP"]
    for outcome in outcomes[1:]:
        if outcome["method"] in METHODS:  # the table's figure is the library's at Table IV's neighbourhood
            assert_same_metrics(outcome, direct_metrics(data, outcome["method"], outcome["params"], max_rank=50))
        assert outcome["mAP"] != pytest.approx(baseline, abs=1e-4), outcome["method"]
