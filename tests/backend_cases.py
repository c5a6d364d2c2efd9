"""The inference calls tests/test_backends.py compares across Keras backends, and the worker that runs them.

`make_case(directory)` (TensorFlow, in the test process) builds small KVM-MN and ACP models, saves them as .keras
files and writes the inputs; `compute(models, inputs)` makes every compared call and returns NumPy arrays by name.
Run as `python -m tests.backend_cases DIRECTORY` with KERAS_BACKEND set (it must be set before Keras is
imported, hence a separate process), it loads the .keras files and the inputs, computes the same names on that
backend and writes them to DIRECTORY/<backend>.npz, with `tensorflow_loaded` saying whether anything imported
TensorFlow.
"""
from __future__ import annotations

import os
import sys

import keras
import numpy as np

from acp import acp_rerank
from acp import model as acp_model
from data.evaluation import evaluate
from kvmmn.model import KVMMN, KVMMNConfig
from rerank import METHODS, evaluate_reranked, expand_embeddings, nearest
from rerank.evaluation import evaluate_features
from rerank.knn import METRICS, knn, pairwise_distance
from rerank.synthetic import clustered_embeddings

KVMMN_CONFIGS = {
    "kvmmn_tiny": dict(backbone="tiny", image_size=(64, 32), feature_dim=16, num_heads=2, key_dim=4, value_dim=6,
                       output_dim=12, comparison_dim=10, score_hidden_units=8, seed=3),
    # Inception V1 to Mixed_4f, as in the paper, on small images: every backbone layer type on every backend.
    "kvmmn_inception": dict(backbone="inception_v1", image_size=(48, 32), feature_dim=16, num_heads=4, key_dim=4,
                            value_dim=4, score_hidden_units=8, seed=5),
}
ACP_TINY = dict(num_layers=2, memory_size=3, num_heads=4, memory_dim=4, model_dim=16, block_dims=(6, 8, 10),
                embedding_dim=12)
ACP_CONFIGS = {"acp_fusion": {}, "acp_embedding": dict(use_fusion=False)}  # Table VII's Exp-G and Exp-E
RERANK_PARAMS = {"aqe": dict(k=5), "alpha_qe": dict(k=5, alpha=3.0), "k_reciprocal": dict(k1=8, k2=3),
                 "alpha_qe_k_reciprocal": dict(k=5, k1=8, k2=3), "sca": dict(k1=8, k2=3),
                 "ecn": dict(k=8, t=3, q=4), "gnn": dict(k1=8, k2=3)}
NUM_IMAGES, K1, K2 = 96, 6, 3
# Compared as squares: near 0 a Euclidean distance from |a|^2 + |b|^2 - 2 a.b is the square root of float32
# rounding (about sqrt(1e-7) = 3e-4 for unit vectors, whatever the backend, TensorFlow against itself included).
EUCLIDEAN = ("knn.euclidean", "pairwise.euclidean", "knn.ties", "rerank.aqe", "rerank.alpha_qe", "acp_fusion.rerank",
             "acp_embedding.rerank")
# Constructing a model on JAX compiles each weight initialiser (one XLA program per weight shape); Inception V1's
# ~130 shapes take minutes on CI's two cores, so the JAX run covers KVM-MN with the toy backbone only (the same
# KVM-MN layers; the backbone's layers are stock Keras layers, compared on PyTorch).
SKIPPED = {"jax": ("kvmmn_inception",), "torch": ()}


def _randomize(model: keras.Model, seed: int) -> None:
    """Random batch-norm parameters and statistics: inference-mode batch norm is then a non-trivial affine map, so a
    backend that mishandled it would differ. (With Inception V1 the untrained score head saturates: its scores are
    one constant, so that model is compared on its memories and attention maps.)"""
    rng = np.random.default_rng(seed)
    for variable in model.weights:
        kind = variable.path.rsplit("/", 1)[-1]
        if kind == "moving_mean":
            variable.assign(rng.normal(0.0, 0.2, variable.shape).astype("float32"))
        elif kind == "moving_variance":
            variable.assign(rng.uniform(0.5, 2.0, variable.shape).astype("float32"))
        elif kind in ("gamma", "beta"):
            variable.assign(rng.normal(1.0 if kind == "gamma" else 0.0, 0.2, variable.shape).astype("float32"))


def make_case(directory: str) -> dict:
    """Build and save the models (.keras) and inputs (inputs.npz) into `directory`; returns the in-memory models."""
    models = {}
    for name, config in KVMMN_CONFIGS.items():
        model = KVMMN(KVMMNConfig(**config))
        _randomize(model, seed=len(models))
        models[name] = model
    for name, overrides in ACP_CONFIGS.items():
        keras.utils.set_random_seed(len(models))
        model = acp_model.build_acp(acp_model.make_config("basic", **ACP_TINY, **overrides))
        _randomize(model, seed=len(models))
        models[name] = model
    for name, model in models.items():
        model.save(os.path.join(directory, f"{name}.keras"))
    rng = np.random.default_rng(0)
    # Noisy enough that no re-ranker reaches mAP 1 (their evaluations would all read 1 and compare nothing).
    problem = clustered_embeddings(NUM_IMAGES, dim=16, images_per_identity=6, separation=1.0, camera_spread=0.3,
                                   noise=1.5, seed=3)
    inputs = {f"images_{name}": rng.uniform(-1.0, 1.0, (5, *config["image_size"], 3)).astype("float32")
              for name, config in KVMMN_CONFIGS.items()}
    inputs.update(problem._asdict())
    num = len(problem.query) + len(problem.gallery)
    inputs.update({name: rng.normal(size=(num, width)).astype("float32")
                   for name, width in zip(acp_model.BLOCK_NAMES, ACP_TINY["block_dims"])})
    inputs["embedding"] = rng.normal(size=(num, ACP_TINY["embedding_dim"])).astype("float32")
    # Exact duplicates of small integer vectors: every product and sum is exact in float32, so the distances tie
    # exactly (no rounding noise decides), and every backend must order them the same way, lower index first.
    inputs["ties"] = np.repeat(rng.integers(-2, 3, (10, 4)).astype("float32"), 3, axis=0)[rng.permutation(30)]
    np.savez(os.path.join(directory, "inputs.npz"), **inputs)
    return models


def load_case(directory: str, skip=()) -> tuple[dict, dict]:
    """The models (but those in `skip`) and inputs `make_case` saved, loaded on the active backend."""
    models = {name: keras.saving.load_model(os.path.join(directory, f"{name}.keras"))
              for name in (*KVMMN_CONFIGS, *ACP_CONFIGS) if name not in skip}
    with np.load(os.path.join(directory, "inputs.npz")) as data:
        inputs = dict(data)
    return models, inputs


def _numpy(x) -> np.ndarray:
    return np.asarray(keras.ops.convert_to_numpy(x))


def _kvmmn(out: dict, name: str, model, images: np.ndarray) -> None:
    memory = model.embed(images)
    for field, value in memory.items():
        out[f"{name}.embed.{field}"] = _numpy(value)
    out[f"{name}.score"] = _numpy(model.score(memory, memory))
    out[f"{name}.score_chunked"] = _numpy(model.score(memory, memory, gallery_batch_size=2))
    pairs = {field: value[:4] for field, value in memory.items()}
    shifted = {field: value[1:] for field, value in memory.items()}
    out[f"{name}.score_pairs"] = _numpy(model.score_pairs(pairs, shifted))
    maps = model.attention_maps(pairs, shifted, location=(1, 1))
    out[f"{name}.attention_a"], out[f"{name}.attention_b"] = maps
    out[f"{name}.call"] = _numpy(model((images[:2], np.stack([images[1:4], images[2:5]])), training=False))


def _acp(out: dict, name: str, model, inputs: dict) -> None:
    rng = np.random.default_rng(1)
    names = [n for n in acp_model.input_names(model) if n not in (acp_model.MASK_NAME, acp_model.K2_NAME)]
    sequences = rng.integers(0, len(inputs[names[0]]), (4, 7))
    mask = np.ones(sequences.shape, bool)
    mask[1, 5:] = False  # a shorter, padded sequence
    features = {n: inputs[n][sequences] for n in names}
    out[f"{name}.predict"] = _numpy(model(acp_model.make_inputs(model, features, k2=np.array([3, 2, 6, 1]),
                                                                mask=mask), training=False))
    query, gallery = inputs["query"], inputs["gallery"]
    q_inputs = {n: inputs[n][:len(query)] for n in names}
    g_inputs = {n: inputs[n][len(query):] for n in names}
    reranked = acp_rerank.acp_rerank(query, gallery, model, k1=K1, k2=K2, query_inputs=q_inputs,
                                     gallery_inputs=g_inputs, batch_size=16, chunk_size=32)
    out[f"{name}.rerank"] = reranked.dense()


def compute(models: dict, inputs: dict) -> dict[str, np.ndarray]:
    """Every compared output by name (see the module docstring), as NumPy arrays."""
    out = {}
    for name in KVMMN_CONFIGS:
        if name in models:
            _kvmmn(out, name, models[name], inputs[f"images_{name}"])
    for name in ACP_CONFIGS:
        _acp(out, name, models[name], inputs)
    query, gallery = inputs["query"], inputs["gallery"]
    labels = [inputs[n] for n in ("q_pids", "g_pids", "q_camids", "g_camids")]
    for metric in METRICS:
        out[f"knn.{metric}.distances"], out[f"knn.{metric}.indices"], out[f"knn.{metric}.row_max"] = knn(
            query, gallery, 7, metric, chunk_size=5, with_row_max=True)
        out[f"pairwise.{metric}"] = pairwise_distance(query, gallery, metric, chunk_size=7)
    out["knn.ties.distances"], out["knn.ties.indices"], _ = nearest(inputs["ties"], 8, "euclidean", chunk_size=7)
    stacked = np.concatenate([query, gallery])
    _, neighbours, _ = nearest(stacked, 5, "euclidean", chunk_size=11)
    out["expand_embeddings"] = expand_embeddings(stacked, neighbours, np.linspace(1, 0, 5)[None].repeat(
        len(stacked), 0), chunk_size=13)
    for method, params in RERANK_PARAMS.items():
        reranked = METHODS[method](query, gallery, chunk_size=17, **params)
        out[f"rerank.{method}"] = reranked.dense(chunk_size=9)
        out[f"rerank.{method}.top_k.distances"], out[f"rerank.{method}.top_k.indices"] = reranked.top_k(6, 9)
        for key, value in evaluate_reranked(reranked, *labels, max_rank=5).items():
            out[f"rerank.{method}.evaluate.{key}"] = np.asarray(value)
    for key, value in evaluate_features(query, gallery, *labels, metric="cosine", max_rank=5).items():
        out[f"evaluate_features.{key}"] = np.asarray(value)
    for key, value in evaluate(pairwise_distance(query, gallery), *labels, protocol="single_shot", max_rank=5,
                               trials=3).items():
        out[f"evaluate.single_shot.{key}"] = np.asarray(value)
    # A compiled predictor (engine.backend.compiled_inference) must read the weights at every call: after new
    # weights are assigned it gives the new outputs (one that baked the weights in would repeat the old ones).
    model = models["acp_embedding"]
    predict = acp_rerank.sequence_predictor(model, (acp_model.EMBEDDING_NAME,), K2)
    sequences = keras.ops.convert_to_tensor(np.arange(14, dtype=np.int32).reshape(2, 7))
    table = keras.ops.convert_to_tensor(inputs[acp_model.EMBEDDING_NAME])
    out["compiled.before_assign"] = _numpy(predict(sequences, table))
    saved = [_numpy(v.value) for v in model.trainable_variables]
    for variable in model.trainable_variables:
        variable.assign(keras.ops.convert_to_tensor(_numpy(variable.value) * 1.5))
    out["compiled.after_assign"] = _numpy(predict(sequences, table))
    for variable, value in zip(model.trainable_variables, saved):
        variable.assign(value)
    return out


def main(directory: str) -> None:
    out = compute(*load_case(directory, SKIPPED[keras.backend.backend()]))
    out["tensorflow_loaded"] = np.asarray(any(m == "tensorflow" or m.startswith("tensorflow.")
                                              for m in sys.modules))
    backend = keras.backend.backend()
    temporary = os.path.join(directory, f"{backend}.tmp.npz")
    np.savez(temporary, **out)
    os.replace(temporary, os.path.join(directory, f"{backend}.npz"))


if __name__ == "__main__":
    main(sys.argv[1])
