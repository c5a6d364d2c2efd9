"""The exports of the three trained models (kvmmn-export, acp-baseline-export, acp-export): preprocessing in the
graph equal to the evaluation pipeline on the same files, each export reloaded in a fresh process with plain
`tf.saved_model.load` and compared with the Keras model, bounded KVM-MN scoring, a true metadata.json."""
import json
import os
import subprocess
import sys
import textwrap

import cv2
import keras
import numpy as np
import pytest
import simplejpeg
import tensorflow as tf

from acp import acp_rerank
from acp import checkpoint as acp_checkpoint
from acp import model as acp_model
from data import serving as image_serving
from data.pipeline import make_dataset
from data.record import Sample
from engine import cli, run_dir
from features import training as baseline_training
from features.head import ModelConfig, build_baseline, feature_extractor
from kvmmn import serving as kvmmn_serving
from kvmmn.model import KVMMN, KVMMNConfig
from kvmmn.training import TrainConfig, check_or_write_run_config

KVMMN_TINY = KVMMNConfig(backbone="tiny", image_size=(64, 32), feature_dim=16, num_heads=2, key_dim=4, value_dim=4,
                         score_hidden_units=8, seed=2)
BASELINE_TINY = ModelConfig(num_classes=4, image_size=(64, 32), blocks=(1, 1, 1, 1))
ACP_TINY = dict(num_layers=2, memory_size=3, num_heads=4, memory_dim=4, model_dim=16, block_dims=(6, 8, 10),
                embedding_dim=12, fusion_dropout=0.2, transformer_dropout=0.1)
QUERY_BATCH, GALLERY_BATCH = 2, 4  # kvmmn-export's chunks: 5 queries x 6 gallery images leave partial chunks


def perturbed(model: keras.Model, seed: int) -> keras.Model:
    """`model` with every weight moved off its seeded initial value (batch-norm variances kept positive), so that an
    export of freshly built weights would not match."""
    rng = np.random.default_rng(seed)
    for weight in model.weights:
        value = keras.ops.convert_to_numpy(weight)
        if "moving_variance" in weight.path:
            weight.assign(value * rng.uniform(0.5, 2.0, value.shape).astype(value.dtype))
        elif weight.dtype in ("float32", "float16"):
            weight.assign(value + rng.normal(0, 0.05, value.shape).astype(value.dtype))
    return model


def run_binary(module, argv) -> None:
    """Run a binary's main in this process with the flags `argv`."""
    try:
        cli.parse(module.FLAGS, [module.__name__, *argv])
        module.main([module.__name__])
    finally:
        module.FLAGS.unparse_flags()


# ---------------------------------------------------------------------------------------------- image files
@pytest.fixture(scope="module")
def image_files(tmp_path_factory):
    """JPEGs (4:2:0, 4:2:2, 4:4:4, of several sizes, shrunk and enlarged by the resize), grey and RGBA PNGs, and a
    uint8 batch of one size saved losslessly as PNGs: {"jpeg": paths, "png": paths, "batch": array, "batch_paths"}."""
    folder = tmp_path_factory.mktemp("images")
    rng = np.random.default_rng(0)

    def picture(height, width):
        # smooth content, as photographs: JPEG's chroma upsampling and the antialiased resize both matter
        return cv2.GaussianBlur(rng.integers(0, 256, (height, width, 3)).astype(np.uint8), (5, 5), 0)

    jpegs = []
    for index, (height, width, subsampling) in enumerate([(80, 40, "420"), (50, 23, "422"), (128, 64, "444"),
                                                          (64, 32, "420")]):
        path = folder / f"person{index}.jpg"
        path.write_bytes(simplejpeg.encode_jpeg(picture(height, width), quality=90, colorspace="RGB",
                                                colorsubsampling=subsampling))
        jpegs.append(str(path))
    grey, rgba = folder / "grey.png", folder / "rgba.png"
    cv2.imwrite(str(grey), picture(70, 30)[:, :, 0])
    cv2.imwrite(str(rgba), np.dstack([picture(40, 20), rng.integers(0, 256, (40, 20, 1)).astype(np.uint8)]))
    batch = np.stack([picture(90, 30) for _ in range(4)])
    batch_paths = []
    for index, image in enumerate(batch):
        path = folder / f"batch{index}.png"
        cv2.imwrite(str(path), image[:, :, ::-1])
        batch_paths.append(str(path))
    return {"jpeg": jpegs, "png": [str(grey), str(rgba)], "batch": batch, "batch_paths": batch_paths}


def pipeline_images(paths, image_size, normalization) -> np.ndarray:
    """The evaluation pipeline's network input for `paths` (make_dataset, no augmentation)."""
    samples = [Sample(path, 0, 0) for path in paths]
    batches = make_dataset(samples, image_size=image_size, normalization=normalization, batch_size=3)
    return np.concatenate([images.numpy() for images, _, _ in batches])


def read_bytes(paths):
    return [open(path, "rb").read() for path in paths]


@pytest.mark.parametrize("normalization,image_size", [("inception", (64, 32)), ("imagenet", (56, 24))])
def test_graph_preprocessing_equals_the_pipeline_on_the_same_files(image_files, normalization, image_size):
    """Bit for bit: the same decoded pixels (libjpeg's accurate DCT, as OpenCV / simplejpeg), the same resize
    kernel, clip and normalisation."""
    encoded = image_files["jpeg"] + image_files["png"]
    served = image_serving.decode_and_preprocess(tf.constant(read_bytes(encoded)), image_size, normalization)
    np.testing.assert_array_equal(served.numpy(), pipeline_images(encoded, image_size, normalization))
    served = image_serving.preprocess(tf.constant(image_files["batch"]), image_size, normalization)
    np.testing.assert_array_equal(served.numpy(), pipeline_images(image_files["batch_paths"], image_size,
                                                                  normalization))


# ---------------------------------------------------------------------------------------------- three exports
@pytest.fixture(scope="module")
def exports(tmp_path_factory):
    """Each model trained-like (weights perturbed), checkpointed as its trainer does, and exported by its binary:
    {"kvmmn" | "baseline" | "acp": (version folder, Keras model, train dir)}."""
    from acp.cli import export as acp_export
    from features.cli import export_baseline
    from kvmmn.cli import export as kvmmn_export

    root = tmp_path_factory.mktemp("exports")
    found = {}

    kvmmn_dir = str(root / "kvmmn_run")
    check_or_write_run_config(TrainConfig(train_dir=kvmmn_dir, model=KVMMN_TINY, max_steps=7))
    kvmmn = perturbed(KVMMN(KVMMN_TINY), 1)
    run_dir.save_checkpoint(tf.train.Checkpoint(model=kvmmn, step=tf.Variable(7, dtype=tf.int64)), kvmmn_dir, 7, 1)
    run_binary(kvmmn_export, [f"--checkpoint={kvmmn_dir}", f"--export_dir={root / 'kvmmn'}",
                              f"--query_batch_size={QUERY_BATCH}", f"--gallery_batch_size={GALLERY_BATCH}"])
    found["kvmmn"] = (str(root / "kvmmn" / "1"), kvmmn, kvmmn_dir)

    baseline_dir = str(root / "baseline_run")
    baseline_training.save_model_config(BASELINE_TINY, baseline_dir)
    baseline = perturbed(build_baseline(BASELINE_TINY), 2)
    run_dir.save_checkpoint(tf.train.Checkpoint(model=baseline), baseline_dir, 3, 1)
    run_binary(export_baseline, [f"--checkpoint={baseline_dir}", f"--export_dir={root / 'baseline'}"])
    found["baseline"] = (str(root / "baseline" / "1"), baseline, baseline_dir)

    acp_dir = str(root / "acp_run")
    config = acp_model.make_config("basic", **ACP_TINY)
    acp_checkpoint.save_config(acp_dir, "basic", config)
    keras.utils.set_random_seed(3)
    acp = perturbed(acp_model.build_acp(config), 3)
    run_dir.save_checkpoint(tf.train.Checkpoint(model=acp), acp_dir, 5, 1)
    run_binary(acp_export, [f"--checkpoint={acp_dir}", f"--export_dir={root / 'acp'}"])
    found["acp"] = (str(root / "acp" / "1"), acp, acp_dir)
    return found


def acp_inputs(seed=0):
    """Arrays for ACP's signatures: sequences (mask with padding, per-sequence k2) and a small query / gallery."""
    rng = np.random.default_rng(seed)
    widths = dict(zip(acp_model.BLOCK_NAMES, ACP_TINY["block_dims"]))
    sequences = {name: rng.normal(size=(3, 7, width)).astype(np.float32) for name, width in widths.items()}
    mask = np.ones((3, 7), bool)
    mask[1, 5:] = False
    sequences.update(mask=mask, k2=np.array([2, 3, 7], np.int32))
    num_query, num_gallery = 5, 17
    rerank = {"query_embedding": rng.normal(size=(num_query, 12)).astype(np.float32),
              "gallery_embedding": rng.normal(size=(num_gallery, 12)).astype(np.float32)}
    for side, count in (("query", num_query), ("gallery", num_gallery)):
        rerank.update({f"{side}_{name}": rng.normal(size=(count, width)).astype(np.float32)
                       for name, width in widths.items()})
    rerank.update(k1=np.array(4, np.int32), k2=np.array(3, np.int32), top_k=np.array(6, np.int32))
    return sequences, rerank


@pytest.fixture(scope="module")
def served(exports, image_files, tmp_path_factory):
    """Every signature of the three exports called in a fresh Python process that imports only TensorFlow and
    NumPy (plain `tf.saved_model.load`, as a serving engineer would): {"<model>.<signature>.<output>": array},
    plus "<model>.signatures": each signature's inputs and outputs as the reloaded SavedModel reports them."""
    folder = tmp_path_factory.mktemp("served")
    sequences, rerank = acp_inputs()
    np.savez(folder / "inputs.npz", batch=image_files["batch"],
             encoded=np.array(read_bytes(image_files["jpeg"] + image_files["png"]), dtype=object),
             **{f"sequences.{k}": v for k, v in sequences.items()}, **{f"rerank.{k}": v for k, v in rerank.items()})
    script = textwrap.dedent("""
        import json, sys
        import numpy as np
        import tensorflow as tf
        assert not {"kvmmn", "acp", "features", "data", "engine"} & set(sys.modules)
        paths, folder = json.loads(sys.argv[1]), sys.argv[2]
        given = np.load(folder + "/inputs.npz", allow_pickle=True)
        out, described = {}, {}

        def call(model, name, **inputs):
            signature = models[model].signatures[name]
            for key, value in signature(**{k: tf.constant(v) for k, v in inputs.items()}).items():
                out[f"{model}.{name}.{key}"] = value.numpy()

        models = {name: tf.saved_model.load(path) for name, path in paths.items()}
        for model, loaded in models.items():
            described[model] = {
                name: {"inputs": {k: [s.dtype.name, s.shape.as_list()]
                                  for k, s in signature.structured_input_signature[1].items()},
                       "outputs": {k: [s.dtype.name, s.shape.as_list()]
                                   for k, s in signature.structured_outputs.items()}}
                for name, signature in loaded.signatures.items()}
        encoded = [bytes(b) for b in given["encoded"]]
        for model in ("kvmmn", "baseline"):
            call(model, "embed", images=given["batch"])
            call(model, "embed_encoded", encoded_images=encoded)
        query = models["kvmmn"].signatures["embed"](images=given["batch"][:2])  # 2 queries of another call
        call("kvmmn", "score", query_keys=np.concatenate([query["keys"]] * 3)[:5],
             query_reference_comparison=np.concatenate([query["reference_comparison"]] * 3)[:5],
             gallery_keys=out["kvmmn.embed_encoded.keys"], gallery_values=out["kvmmn.embed_encoded.values"])
        call("acp", "correlations", **{k[10:]: given[k] for k in given.files if k.startswith("sequences.")})
        call("acp", "rerank", **{k[7:]: given[k] for k in given.files if k.startswith("rerank.")})
        np.savez(folder + "/served.npz", **out)
        with open(folder + "/signatures.json", "w") as handle:
            json.dump(described, handle)
    """)
    paths = {name: version for name, (version, _, _) in exports.items()}
    done = subprocess.run([sys.executable, "-c", script, json.dumps(paths), str(folder)], cwd=str(folder),
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-4000:]
    return dict(np.load(folder / "served.npz")), json.loads((folder / "signatures.json").read_text())


def test_kvmmn_export_in_a_fresh_process_matches_the_keras_model(exports, served, image_files):
    _, model, _ = exports["kvmmn"]
    out, _ = served
    encoded = image_files["jpeg"] + image_files["png"]
    for signature, paths in (("embed", image_files["batch_paths"]), ("embed_encoded", encoded)):
        expected = model.embed(pipeline_images(paths, KVMMN_TINY.image_size, "inception"))
        for field in ("keys", "values", "reference_comparison", "pooled"):
            np.testing.assert_allclose(out[f"kvmmn.{signature}.{field}"], expected[field], rtol=1e-5, atol=1e-5)
    query = model.embed(pipeline_images(image_files["batch_paths"][:2] * 3, KVMMN_TINY.image_size, "inception"))
    gallery = model.embed(pipeline_images(encoded, KVMMN_TINY.image_size, "inception"))
    expected = model.score({k: v[:5] for k, v in query.items()}, gallery)  # unchunked Keras scores
    assert out["kvmmn.score.scores"].shape == (5, 6)
    np.testing.assert_allclose(out["kvmmn.score.scores"], expected, rtol=1e-5, atol=1e-5)


def test_baseline_export_in_a_fresh_process_matches_the_keras_model(exports, served, image_files):
    _, model, _ = exports["baseline"]
    out, _ = served
    extractor = feature_extractor(model)
    for signature, paths in (("embed", image_files["batch_paths"]),
                             ("embed_encoded", image_files["jpeg"] + image_files["png"])):
        expected = extractor(pipeline_images(paths, BASELINE_TINY.image_size, "imagenet"), training=False)
        for name in ("embedding", "f3", "f4", "f5"):
            np.testing.assert_allclose(out[f"baseline.{signature}.{name}"], expected[name], rtol=1e-4, atol=1e-4)


def test_acp_export_in_a_fresh_process_matches_the_keras_model_and_acp_rerank(exports, served):
    _, model, _ = exports["acp"]
    out, _ = served
    sequences, rerank = acp_inputs()
    np.testing.assert_allclose(out["acp.correlations.correlations"], model(sequences, training=False),
                               rtol=1e-5, atol=1e-6)
    assert np.all(out["acp.correlations.correlations"][1, 5:] == 0)  # padded positions
    names = acp_model.BLOCK_NAMES
    reranked = acp_rerank.acp_rerank(rerank["query_embedding"], rerank["gallery_embedding"], model, k1=4, k2=3,
                                     query_inputs={n: rerank[f"query_{n}"] for n in names},
                                     gallery_inputs={n: rerank[f"gallery_{n}"] for n in names})
    distances, indices = reranked.top_k(6)
    np.testing.assert_array_equal(out["acp.rerank.indices"], indices)
    np.testing.assert_allclose(out["acp.rerank.distances"], distances, rtol=1e-5, atol=1e-5)
    # the re-ranking changed the order of the original cosine ranking: the test compares a re-ranking
    unit = lambda x: x / np.linalg.norm(x, axis=1, keepdims=True)  # noqa: E731
    original = np.argsort(-unit(rerank["query_embedding"]) @ unit(rerank["gallery_embedding"]).T, axis=1)[:, :6]
    assert (original != indices).any()


def test_metadata_names_what_the_signatures_take_and_give(exports, served):
    _, described = served
    expected_signatures = {"kvmmn": {"embed", "embed_encoded", "score", "serving_default"},
                           "baseline": {"embed", "embed_encoded", "serving_default"},
                           "acp": {"correlations", "rerank", "serving_default"}}
    for name, (version, _, train_dir) in exports.items():
        metadata = json.loads(open(os.path.join(version, "metadata.json")).read())
        assert set(metadata["signatures"]) == expected_signatures[name] == set(described[name])
        for signature, content in metadata["signatures"].items():
            for side in ("inputs", "outputs"):
                assert {k: [v["dtype"], v["shape"]] for k, v in content[side].items()} == \
                    described[name][signature][side], (name, signature, side)
        assert metadata["checkpoint"].startswith(train_dir)
    kvmmn = json.loads(open(os.path.join(exports["kvmmn"][0], "metadata.json")).read())
    assert set(kvmmn["signatures"]["score"]["inputs"]) == {"query_keys", "query_reference_comparison",
                                                           "gallery_keys", "gallery_values"}
    assert set(kvmmn["signatures"]["score"]["outputs"]) == {"scores"}
    assert kvmmn["signatures"]["embed"]["inputs"] == {"images": {"dtype": "uint8", "shape": [None, None, None, 3]}}
    assert kvmmn["model_config"] == KVMMN_TINY.to_dict() and kvmmn["training_config"]["max_steps"] == 7
    assert kvmmn["step"] == 7 and kvmmn["score"]["query_batch_size"] == QUERY_BATCH
    preprocessing = kvmmn["preprocessing"]
    assert preprocessing["image_size"] == [64, 32] and preprocessing["channel_order"] == "RGB"
    assert preprocessing["normalization"] == "inception" and "antialias=True" in preprocessing["resize"]
    baseline = json.loads(open(os.path.join(exports["baseline"][0], "metadata.json")).read())
    assert baseline["preprocessing"]["normalization"] == "imagenet" and baseline["preprocessing"]["std"][0] == 0.229
    assert ModelConfig(**baseline["model_config"]) == BASELINE_TINY
    assert baseline["training_config"] == json.loads(open(os.path.join(exports["baseline"][2],
                                                                       baseline_training.MODEL_CONFIG_FILE)).read())
    acp = json.loads(open(os.path.join(exports["acp"][0], "metadata.json")).read())
    assert acp["preset"] == "basic" and acp["model_config"]["model_dim"] == 16
    assert acp["training_config"]["preset"] == "basic" and acp["training_config"]["config"]["model_dim"] == 16
    assert acp["rerank"]["metric"] == "cosine" and acp["rerank"]["default_k2"] == 6
    assert set(acp["signatures"]["correlations"]["outputs"]) == {"correlations"}
    assert set(acp["signatures"]["rerank"]["outputs"]) == {"indices", "distances"}


def test_each_export_is_a_new_version_beside_the_earlier_ones(exports, tmp_path):
    version, model, _ = exports["baseline"]
    export_dir = os.path.dirname(version)
    from features import serving as baseline_serving

    second = baseline_serving.export_saved_model(model, BASELINE_TINY, export_dir)
    assert second == os.path.join(export_dir, "2") and os.path.isfile(os.path.join(version, "saved_model.pb"))
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("a user's file")
    with pytest.raises(run_dir.OwnershipError, match="did not create"):
        baseline_serving.export_saved_model(model, BASELINE_TINY, str(tmp_path / "mine"))
    assert os.listdir(tmp_path / "mine") == ["notes.txt"]


def test_kvmmn_score_works_on_bounded_chunks(monkeypatch):
    """Whatever Q and G, the score signature's function computes query_batch_size x gallery_batch_size pairs at a
    time, covering every pair (run eagerly, its loops run in Python and each chunk's size is seen)."""
    model = KVMMN(KVMMN_TINY)
    rng = np.random.default_rng(0)
    memory = model.embed(rng.uniform(-1, 1, (7, 64, 32, 3)).astype(np.float32))
    query = {k: v[:5] for k, v in memory.items()}
    expected = np.asarray(model.score(query, memory))  # one grid, unchunked
    seen = []
    grid = model._score_grid

    def recording(keys_q, reference_q, keys_g, values_g):
        seen.append((int(keys_q.shape[0]), int(keys_g.shape[0])))
        return grid(keys_q, reference_q, keys_g, values_g)

    monkeypatch.setattr(model, "_score_grid", recording)
    scores = kvmmn_serving.bounded_score(model, 2, 3)(query["keys"], query["reference_comparison"], memory["keys"],
                                                      memory["values"])["scores"]
    assert seen == [(2, 3)] * 9  # 5 x 7 pairs in chunks: 3 of queries (one padded) x 3 of gallery images
    np.testing.assert_allclose(scores, expected, rtol=1e-5, atol=1e-6)


def test_every_exporter_claims_its_folder_before_loading_and_prints_the_version(tmp_path, capsys):
    """engine.export.export_checkpoint, the main of kvmmn-export, acp-baseline-export and acp-export: the export
    folder is the exporter's before the checkpoint is read, a folder not its own is refused before anything loads,
    and the version folder written is printed."""
    from absl import app

    from engine import export

    calls = []

    def flag_values(export_dir):
        fv = cli.new_flags()
        export.define_flags(fv, "toy-train")
        fv(["toy-export", "--checkpoint=runs/toy", f"--export_dir={export_dir}"])
        return fv

    def restore(checkpoint):
        calls.append(("restore", checkpoint, run_dir.owner(str(tmp_path / "out"))))
        return "model", {"checkpoint": checkpoint + "/ckpt-3", "step": 3}

    def write(model, export_dir, metadata):
        calls.append(("write", model, export_dir, metadata))
        return os.path.join(export_dir, "1")

    version = export.export_checkpoint(flag_values(tmp_path / "out"), "toy-export", "toy-train", restore, write)
    assert version == str(tmp_path / "out" / "1") and capsys.readouterr().out == version + "\n"
    assert calls == [("restore", "runs/toy", "toy-export"),  # claimed before the restore
                     ("write", "model", str(tmp_path / "out"), {"checkpoint": "runs/toy/ckpt-3", "step": 3})]
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("a user's file")
    calls.clear()
    with pytest.raises(run_dir.OwnershipError, match="did not create"):
        export.export_checkpoint(flag_values(tmp_path / "mine"), "toy-export", "toy-train", restore, write)
    assert calls == [] and os.listdir(tmp_path / "mine") == ["notes.txt"]
    fv = cli.new_flags()
    export.define_flags(fv, "toy-train")
    fv(["toy-export", f"--export_dir={tmp_path / 'other'}"])
    with pytest.raises(app.UsageError, match="--checkpoint is required"):
        export.export_checkpoint(fv, "toy-export", "toy-train", restore, write)
