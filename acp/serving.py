"""A trained ACP as a SavedModel for TensorFlow Serving (the library behind `acp-export`).

Signatures (B sequences of length k1; Q queries and G gallery images with baseline embeddings of width d):

    correlations(f3 [B, k1, 512], f4 [B, k1, 1024], f5 [B, k1, 2048]    (with multi-block fusion; else
                 embedding [B, k1, d]), mask [B, k1] bool, k2 [B] int32   (with memory refinement))
        -> correlations [B, k1] float32                                   (also `serving_default`)
    rerank(query_embedding [Q, d], gallery_embedding [G, d],
           query_f3, query_f4, query_f5, gallery_f3, gallery_f4, gallery_f5   (multi-block fusion only),
           k1, k2, top_k: int32 scalars)
        -> indices [Q, top_k] int32 (gallery rows, best first), distances [Q, top_k] float32

`correlations` is the network of `acp.model` (Eq. 11): row 0 of each sequence is the probe, `mask` marks the real
neighbours, `k2` the refinement length. `rerank` is the whole re-ranking of `acp.acp_rerank.acp_rerank` in one graph
(Eq. 1): the k1 nearest of the Q + G embeddings by `metric` (each row's own index first), ACP's correlations over
each neighbourhood, the expansion p* = sum_j s_j f_j of the L2-normalised embeddings normalised again, and the
Euclidean distances between expanded queries and gallery items, of which it returns the top_k. It holds the
(Q + G)^2 distance matrix and the (Q + G) x k1 gathered inputs at once: for galleries that fit in memory (20K
images: 1.6 GB of distances); `acp-rerank` re-ranks larger ones in chunks. k1 follows the paper's rule N/C of the
gallery (images per identity, at least 2; `rerank.neighbourhood.default_k1`), which needs the gallery's identities: the
caller computes it. metadata.json records the rule, the metric and Table IV's k2 = 6. In Python:

    served = tf.saved_model.load("exported/acp/1")
    found = served.signatures["rerank"](query_embedding=q, gallery_embedding=g, query_f3=q3, ..., gallery_f5=g5,
                                        k1=tf.constant(4), k2=tf.constant(6), top_k=tf.constant(10))
    found["indices"], found["distances"]
"""
from __future__ import annotations

import dataclasses

import keras
import tensorflow as tf

from acp import acp_rerank
from acp import model as acp_model
from engine import export
from rerank import neighbourhood
from rerank.knn import METRICS
from rerank.knn import distance_block  # the kNN distance op itself, in-graph

EXPORT_TOOL = "acp-export"


def model_input_specs(model: keras.Model) -> dict:
    """{name: tf.TensorSpec} of the ACP model's inputs, named as the model names them."""
    return {tensor.name: tf.TensorSpec(tensor.shape, tensor.dtype, name=tensor.name) for tensor in model.inputs}


def feature_input_names(model: keras.Model) -> tuple[str, ...]:
    """The model's per-image inputs (f3, f4, f5, or embedding), without mask and k2."""
    return tuple(name for name in acp_model.input_names(model) if name not in (acp_model.MASK_NAME,
                                                                                 acp_model.K2_NAME))


def _unit(x: tf.Tensor) -> tf.Tensor:
    """Rows scaled to unit length, rows of zeros left zero (`rerank.neighbours.l2_normalize`)."""
    return x / tf.maximum(tf.norm(x, axis=1, keepdims=True), 1e-12)


def _probe_first(neighbours: tf.Tensor) -> tf.Tensor:
    """Each row's own index moved to column 0, the others kept in order; where a row is missing from its list
    (more exact duplicates than columns), put first and the last neighbour dropped (`acp.sequences.probe_first`)."""
    rows = tf.range(tf.shape(neighbours)[0], dtype=neighbours.dtype)[:, None]
    is_self = tf.equal(neighbours, rows)
    order = tf.argsort(tf.cast(~is_self, tf.int32), axis=1, stable=True)
    moved = tf.gather(neighbours, order, batch_dims=1)
    missing = tf.concat([rows, neighbours[:, :-1]], axis=1)
    return tf.where(tf.reduce_any(is_self, axis=1, keepdims=True), moved, missing)


def rerank_function(model: keras.Model, metric: str = "cosine"):
    """`rerank(query_embedding, gallery_embedding, [query_<input>, gallery_<input> ...,] k1, k2, top_k)` of the
    module docstring, a function of tensors (keyword arguments)."""
    if metric not in METRICS:
        raise ValueError(f"metric={metric!r}: choose one of {', '.join(METRICS)}")
    names = feature_input_names(model)
    takes_embedding = names == (acp_model.EMBEDDING_NAME,)

    def rerank(query_embedding, gallery_embedding, k1, k2, top_k, **inputs):
        num_query, num_all = tf.shape(query_embedding)[0], tf.shape(query_embedding)[0] + tf.shape(gallery_embedding)[0]
        tf.debugging.assert_greater_equal(k1, 1, message="k1 must be >= 1")
        tf.debugging.assert_less_equal(k1, num_all, message="k1 must be at most the number of query + gallery rows")
        tf.debugging.assert_greater_equal(k2, 1, message="k2 must be >= 1")
        tf.debugging.assert_greater_equal(top_k, 1, message="top_k must be >= 1")
        tf.debugging.assert_less_equal(top_k, tf.shape(gallery_embedding)[0],
                                       message="top_k must be at most the number of gallery rows")
        embeddings = tf.concat([query_embedding, gallery_embedding], axis=0)
        unit = _unit(embeddings)
        # the neighbour search of rerank.knn: cosine on unit rows, the Euclidean metrics on the rows as given
        searched = unit if metric == "cosine" else embeddings
        distances = distance_block(searched, searched, tf.reduce_sum(searched * searched, axis=1), metric)
        neighbours = _probe_first(tf.math.top_k(-distances, k=k1, sorted=True).indices)
        tables = ({acp_model.EMBEDDING_NAME: embeddings} if takes_embedding else
                  {name: tf.concat([inputs[f"query_{name}"], inputs[f"gallery_{name}"]], axis=0) for name in names})
        gathered = {name: tf.gather(table, neighbours) for name, table in tables.items()}
        correlations = tf.cast(model(acp_model.make_inputs(model, gathered, tf.minimum(k2, k1)), training=False),
                               tf.float32)                                                    # [N, k1]
        expanded = _unit(tf.einsum("nk,nkd->nd", correlations, tf.gather(unit, neighbours)))   # Eq. 1
        query, gallery = expanded[:num_query], expanded[num_query:]
        reranked = distance_block(query, gallery, tf.reduce_sum(gallery * gallery, axis=1), "euclidean")
        negative, indices = tf.math.top_k(-reranked, k=top_k, sorted=True)
        return {"indices": indices, "distances": -negative}

    return rerank


def build_archive(model: keras.Model, metric: str = "cosine") -> keras.export.ExportArchive:
    """The `ExportArchive` with the `correlations` and `rerank` signatures of the module docstring."""
    archive = keras.export.ExportArchive()
    archive.track(model)
    specs = model_input_specs(model)
    archive.add_endpoint("correlations", lambda inputs: {"correlations": tf.cast(model(inputs, training=False),
                                                                                 tf.float32)},
                         input_signature=[specs])
    names = feature_input_names(model)
    embedding_dim = (specs[acp_model.EMBEDDING_NAME].shape[-1] if names == (acp_model.EMBEDDING_NAME,)
                     else None)
    rerank = rerank_function(model, metric)
    side_inputs = [(f"{side}_{name}", specs[name].shape[-1]) for side in ("query", "gallery") for name in names
                   if name != acp_model.EMBEDDING_NAME]
    signature = {name: tf.TensorSpec([None, width], tf.float32, name=name) for name, width in
                 [("query_embedding", embedding_dim), ("gallery_embedding", embedding_dim), *side_inputs]}
    signature.update({name: tf.TensorSpec([], tf.int32, name=name) for name in ("k1", "k2", "top_k")})
    archive.add_endpoint("rerank", lambda inputs: rerank(**inputs), input_signature=[signature])
    return archive


def export_saved_model(model: keras.Model, export_dir: str, preset: str, config: acp_model.ACPConfig,
                       metric: str = "cosine", extra_metadata: dict | None = None) -> str:
    """Write the ACP `model` (of `preset` and `config`, as `acp.checkpoint.restore_model` returns them) with the
    signatures of the module docstring as a new version folder of `export_dir` (`engine.export.write_version`);
    returns that folder. `metric`: the neighbour search of `rerank` (the one the model was trained with).
    Raises engine.run_dir.OwnershipError, before anything is written, when `export_dir` is not acp-export's."""
    archive = build_archive(model, metric)
    metadata = {"model": "ACP", "exporter": EXPORT_TOOL, "preset": preset, "model_config": dataclasses.asdict(config),
                "inputs": {"features": list(feature_input_names(model)),
                           "sequence": "row 0 is the probe itself, then its nearest neighbours by `metric`"},
                "rerank": {"metric": metric, "k1_rule": f"N/C of the gallery (images per identity) rounded, at "
                           f"least {neighbourhood.MIN_K1} (rerank.neighbourhood.default_k1)",
                           "default_k2": acp_rerank.DEFAULT_K2,
                           "expansion": "p* = sum_j s_j f_j over L2-normalised embeddings, normalised again (Eq. 1)",
                           "distances": "Euclidean between the expanded unit vectors, smaller = more alike"},
                **(extra_metadata or {})}
    return export.write_version(archive, export_dir, EXPORT_TOOL, metadata)
