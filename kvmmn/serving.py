"""A trained KVM-MN as a SavedModel for TensorFlow Serving (the library behind `kvmmn-export`).

Signatures (inputs and outputs by name; Q queries, G gallery images, L locations, H heads):

    embed(images: uint8 [N, H, W, 3] RGB, any size)                 (also `serving_default`)
    embed_encoded(encoded_images: string [N], JPEG or PNG files)
        -> keys [N, L, H, d_k], values [N, L, H, d_v], reference_comparison [N, L, d_c], pooled [N, C]   (float32)
    score(query_keys [Q, L, H, d_k], query_reference_comparison [Q, L, d_c],
          gallery_keys [G, L, H, d_k], gallery_values [G, L, H, d_v])
        -> scores [Q, G] float32: f(query_q, gallery_g) of Eq. 6, higher = more alike

`embed` resizes and normalises in the graph as the evaluation pipeline does (`data.serving`: bilinear antialiased
resize to the model's image size, [-1, 1]). An image's memory is computed once: a query keeps its keys and
reference_comparison, a gallery image its keys and values (and `pooled`, the L2 feature of a shortlist); `score`
takes exactly those four tensors. It scores `query_batch_size` queries against `gallery_batch_size` gallery
images at a time (a `tf.while_loop` over chunks), so its working memory is bounded by their product whatever Q
and G are (`metadata.json` gives the bytes per pair), besides the [Q, G] scores themselves. In Python:

    served = tf.saved_model.load("exported/kvmmn/1")
    query = served.signatures["embed"](images=tf.constant(query_uint8))
    gallery = served.signatures["embed_encoded"](encoded_images=tf.constant([open(p, "rb").read() for p in paths]))
    scores = served.signatures["score"](query_keys=query["keys"],
                                        query_reference_comparison=query["reference_comparison"],
                                        gallery_keys=gallery["keys"], gallery_values=gallery["values"])["scores"]

Export folders follow TensorFlow Serving's layout, `<export_dir>/<version>/` (`engine.export`); metadata.json holds
the signatures as written, the preprocessing, the model and training configuration and the checkpoint.
"""
from __future__ import annotations

import keras
import tensorflow as tf

from data import serving as image_serving
from engine import export
from kvmmn.model import MEMORY_FIELDS, KVMMN

EXPORT_TOOL = "kvmmn-export"  # the owner named in an export folder's marker
NORMALIZATION = "inception"  # TF-slim's Inception preprocessing, as kvmmn-train and kvmmn-eval read images
SCORE_QUERY_FIELDS = ("keys", "reference_comparison")  # what `KVMMN.score` reads of a query's memory
SCORE_GALLERY_FIELDS = ("keys", "values")  # ... and of a gallery image's
DEFAULT_QUERY_BATCH_SIZE = 4
DEFAULT_GALLERY_BATCH_SIZE = 64


def _padded(x: tf.Tensor, size: int) -> tf.Tensor:
    """[N, ...] zero-padded at the end to a multiple of `size` rows."""
    # (size - n % size) % size, not -n % size: ONNX's Mod of a negative number (tf2onnx) takes the C sign
    return tf.pad(x, [[0, (size - tf.shape(x)[0] % size) % size]] + [[0, 0]] * (len(x.shape) - 1))


def _rows(x: tf.Tensor, start, size: int) -> tf.Tensor:
    """x[start:start + size] with its static shape [size, ...] (`x` padded by `_padded`)."""
    return tf.reshape(x[start:start + size], [size, *x.shape[1:]])


def bounded_score(model: KVMMN, query_batch_size: int, gallery_batch_size: int):
    """`score(query_keys, query_reference_comparison, gallery_keys, gallery_values) -> {"scores": [Q, G]}`, computing
    `query_batch_size` x `gallery_batch_size` pairs at a time: `KVMMN.score` of one chunk of queries and one of
    gallery images (zero-padded to full chunks), for every pair of chunks in turn.

    One `tf.while_loop` over the pairs of chunks, of static size, appending each [query_batch_size,
    gallery_batch_size] block: TFLite's interpreter runs it (the TensorList ops of a nested `tf.map_fn` fail there,
    "Fill dimensions must be >= 0") and so does ONNX Runtime after tf2onnx (which mis-shapes slices inside nested
    loops).
    """
    for name, value in (("query_batch_size", query_batch_size), ("gallery_batch_size", gallery_batch_size)):
        if int(value) < 1:
            raise ValueError(f"{name}={value} must be >= 1")

    def score(query_keys, query_reference_comparison, gallery_keys, gallery_values):
        num_query, num_gallery = tf.shape(query_keys)[0], tf.shape(gallery_keys)[0]
        query_chunks = (num_query + query_batch_size - 1) // query_batch_size
        gallery_chunks = (num_gallery + gallery_batch_size - 1) // gallery_batch_size
        query_keys, query_reference_comparison = (_padded(x, query_batch_size)
                                                  for x in (query_keys, query_reference_comparison))
        gallery_keys, gallery_values = (_padded(x, gallery_batch_size) for x in (gallery_keys, gallery_values))

        def step(index, blocks):
            start, begin = (index // gallery_chunks) * query_batch_size, (index % gallery_chunks) * gallery_batch_size
            query = {"keys": _rows(query_keys, start, query_batch_size),
                     "reference_comparison": _rows(query_reference_comparison, start, query_batch_size)}
            gallery = {"keys": _rows(gallery_keys, begin, gallery_batch_size),
                       "values": _rows(gallery_values, begin, gallery_batch_size)}
            block = tf.cast(model.score(query, gallery), tf.float32)
            return index + 1, tf.concat([blocks, block[None]], axis=0)

        blocks = tf.while_loop(lambda index, _: index < query_chunks * gallery_chunks, step,
                               (tf.constant(0), tf.zeros([0, query_batch_size, gallery_batch_size])),
                               shape_invariants=(tf.TensorShape([]),
                                                 tf.TensorShape([None, query_batch_size, gallery_batch_size])),
                               parallel_iterations=1)[1]                # [query chunks x gallery chunks, qb, gb]
        blocks = tf.reshape(blocks, [query_chunks, gallery_chunks, query_batch_size, gallery_batch_size])
        scores = tf.reshape(tf.transpose(blocks, [0, 2, 1, 3]),
                            [query_chunks * query_batch_size, gallery_chunks * gallery_batch_size])
        return {"scores": scores[:num_query, :num_gallery]}

    return score


def bytes_per_pair(model: KVMMN) -> int:
    """float32 bytes of the largest intermediates of one query-gallery pair in `score` (the co-attention reads
    [L, H, d_v], the fused [L, d_o] and compared [L, d_c] features, the FFN's hidden [L, units])."""
    c = model.config
    return 4 * c.num_locations * (c.num_heads * c.value_dim + model.output_dim + model.comparison_dim
                                  + c.score_hidden_units)


def build_archive(model: KVMMN, query_batch_size: int = DEFAULT_QUERY_BATCH_SIZE,
                  gallery_batch_size: int = DEFAULT_GALLERY_BATCH_SIZE) -> keras.export.ExportArchive:
    """The `ExportArchive` with the `embed`, `embed_encoded` and `score` signatures of the module docstring."""
    specs = model.memory_signature()
    archive = keras.export.ExportArchive()
    archive.track(model)

    def embed(images):
        memory = model.embed(images)
        return {field: tf.cast(memory[field], tf.float32) for field in MEMORY_FIELDS}

    image_serving.add_image_endpoints(archive, "embed", embed, model.config.image_size, NORMALIZATION)
    archive.add_endpoint("score", bounded_score(model, query_batch_size, gallery_batch_size), input_signature=[
        *(tf.TensorSpec(specs[name].shape, tf.float32, name=f"query_{name}") for name in SCORE_QUERY_FIELDS),
        *(tf.TensorSpec(specs[name].shape, tf.float32, name=f"gallery_{name}") for name in SCORE_GALLERY_FIELDS)])
    return archive


def export_saved_model(model: KVMMN, export_dir: str, query_batch_size: int = DEFAULT_QUERY_BATCH_SIZE,
                       gallery_batch_size: int = DEFAULT_GALLERY_BATCH_SIZE,
                       extra_metadata: dict | None = None) -> str:
    """Write `model` with the signatures of the module docstring as a new version folder of `export_dir`
    (`engine.export.write_version`); returns that folder, e.g. `<export_dir>/1`.

    query_batch_size, gallery_batch_size: `score` computes this many queries x gallery images at a time.
    extra_metadata: added to metadata.json (kvmmn-export: the training configuration, checkpoint and step).
    Raises engine.run_dir.OwnershipError, before anything is written, when `export_dir` is a file, a non-empty
    folder that kvmmn-export did not create, or another tool's folder.
    """
    archive = build_archive(model, query_batch_size, gallery_batch_size)
    metadata = {"model": "KVM-MN", "exporter": EXPORT_TOOL, "model_config": model.config.to_dict(),
                "preprocessing": image_serving.preprocessing_metadata(model.config.image_size, NORMALIZATION),
                "score": {"query_fields": list(SCORE_QUERY_FIELDS),
                          "gallery_fields": list(SCORE_GALLERY_FIELDS),
                          "higher_is_more_alike": True, "query_batch_size": int(query_batch_size),
                          "gallery_batch_size": int(gallery_batch_size),
                          "working_bytes_per_pair": bytes_per_pair(model)},
                **(extra_metadata or {})}
    return export.write_version(archive, export_dir, EXPORT_TOOL, metadata)
