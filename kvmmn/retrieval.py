"""Retrieval with KVM-MN: embed every image once, shortlist by L2, re-score the shortlist with the matching
network, evaluate (the library behind `kvmmn-eval`).

For each query:
1. the gallery is ranked by the L2 distance between pooled backbone features (`KVMMN.pooled_features`; ties by
   gallery index), and its first K images form the shortlist (`shortlist=None`: the whole gallery, i.e.
   exhaustive scoring);
2. the shortlist is re-scored with f(query, gallery image) of Eq. 6 from the stored memories (`KVMMN.score`) and
   re-ordered by decreasing score (ties keep the L2 order);
3. the final ranking is the re-scored shortlist followed by the rest of the gallery in L2 order.

How distances reach `data.evaluation` (so that its ranking is exactly this one): the "distance" of a gallery image
is its position in the query's final ranking (0, 1, ..., G-1, exact in float32 up to 2^24 images). CMC, mAP and
mINP then follow the dataset's protocol (`Record.protocol`: Market-1501's same-camera removal, the single-shot
CUHK protocol); the removal of same-identity-same-camera images happens after ranking, as it always does.

The ranking is produced and evaluated one block of query rows at a time (`ShortlistDistances`, a
`rerank.distances.RerankedDistances` like every re-ranker's output), so memory is O(block x G), never the dense
[Q, G] matrix.

The pooled-L2 ranking alone (the same backbone, no matching network) is evaluated beside it as a baseline.
"""
from __future__ import annotations

import time

import numpy as np
import tensorflow as tf
from absl import logging

from data import datasets
from data.record import Record
from kvmmn.embedding import embed_memories
from kvmmn.model import KVMMN
from rerank.distances import RerankedDistances
from rerank.evaluation import evaluate_features, evaluate_reranked

QUERY_FIELDS = ("keys", "reference_comparison", "pooled")
GALLERY_FIELDS = ("keys", "values", "pooled")


def parse_shortlist(value) -> int | None:
    """A `--shortlist` value: a positive number of gallery images, or "all" (None: exhaustive scoring)."""
    if value is None or str(value).lower() == "all":
        return None
    try:
        number = int(value)
    except (TypeError, ValueError):
        raise ValueError(f"shortlist={value!r} must be a positive integer or 'all'") from None
    if number < 1:
        raise ValueError(f"shortlist={value!r} must be a positive integer or 'all'")
    return number


class Scorer:
    """Batched KVM-MN scores from stored memories (compiled once per model)."""

    def __init__(self, model: KVMMN):
        self.model = model
        specs = model.memory_signature()
        query = [tf.TensorSpec(specs[f].shape, tf.float32) for f in ("keys", "reference_comparison")]
        sets = [tf.TensorSpec([None, *specs[f].shape], tf.float32) for f in ("keys", "values")]
        grid = [tf.TensorSpec(specs[f].shape, tf.float32) for f in ("keys", "values")]
        self._sets = tf.function(self._score_sets, input_signature=query + sets)
        self._grid = tf.function(self._score_grid, input_signature=query + grid)

    def _score_grid(self, keys_q, reference_q, keys_g, values_g):
        return tf.cast(self.model.score({"keys": keys_q, "reference_comparison": reference_q},
                                        {"keys": keys_g, "values": values_g}), tf.float32)

    def _score_sets(self, keys_q, reference_q, keys_g, values_g):
        def one(args):
            kq, rq, kg, vg = args
            return self._score_grid(kq[None], rq[None], kg, vg)[0]

        return tf.map_fn(one, (keys_q, reference_q, keys_g, values_g), fn_output_signature=tf.float32)

    def sets(self, query: dict, rows, gallery: dict, index: np.ndarray) -> np.ndarray:
        """[R, K] scores of queries `rows` against their own gallery images `index` [R, K]."""
        return self._sets(query["keys"][rows], query["reference_comparison"][rows],
                          gallery["keys"][index], gallery["values"][index]).numpy()

    def grid(self, query: dict, rows, gallery: dict, gallery_batch_size: int) -> np.ndarray:
        """[R, G] scores of queries `rows` against every gallery image, `gallery_batch_size` at a time."""
        keys_q, reference_q = query["keys"][rows], query["reference_comparison"][rows]
        total = len(gallery["keys"])
        out = np.empty((len(keys_q), total), np.float32)
        for start in range(0, total, gallery_batch_size):
            stop = min(start + gallery_batch_size, total)
            out[:, start:stop] = self._grid(keys_q, reference_q, gallery["keys"][start:stop],
                                            gallery["values"][start:stop]).numpy()
        return out


class ShortlistDistances(RerankedDistances):
    """Each gallery image's position in each query's final ranking (see the module docstring), produced one block of
    query rows at a time like every re-ranker's output (`rerank.distances.RerankedDistances`): `iter_blocks(chunk_size)`
    yields float32 [rows, G] blocks, so evaluating (`rerank.evaluate_reranked`) needs O(chunk_size x G) memory, never
    the [Q, G] matrix; `dense()` builds that matrix only where it is asked for.

    query: memories with keys, reference_comparison and pooled; gallery: memories with keys, values and pooled.
    shortlist: K, or None for every gallery image. pair_batch_size: (query, gallery) pairs scored at once, whatever
    the block size.
    """

    def __init__(self, model: KVMMN, query: dict, gallery: dict, shortlist: int | None = 100,
                 pair_batch_size: int = 1024):
        # The blocks the base class computes are the pooled-L2 distances the shortlist is drawn from.
        super().__init__(query["pooled"], gallery["pooled"], "euclidean")
        self.memories = (query, gallery)
        num_gallery = len(gallery["pooled"])
        self.k = num_gallery if shortlist is None else min(shortlist, num_gallery)
        self.pair_batch_size = pair_batch_size
        self.scorer = Scorer(model)

    def _rerank(self, start: int, stop: int, l2: np.ndarray) -> np.ndarray:
        query, gallery = self.memories
        num_gallery, k = l2.shape[1], self.k
        order = np.argsort(l2, axis=1, kind="stable")
        candidates = order[:, :k]
        scores = np.empty(candidates.shape, np.float32)
        # Queries scored at once: pair_batch_size // K of them (their K candidates each), one at a time for K = G.
        rows_per_batch = max(1, self.pair_batch_size // k)
        for first in range(0, stop - start, rows_per_batch):
            last = min(first + rows_per_batch, stop - start)
            rows = np.arange(start + first, start + last)
            if k == num_gallery:
                grid = self.scorer.grid(query, rows, gallery, max(1, self.pair_batch_size // len(rows)))
                scores[first:last] = np.take_along_axis(grid, candidates[first:last], axis=1)
            else:
                scores[first:last] = self.scorer.sets(query, rows, gallery, candidates[first:last])
        if not np.all(np.isfinite(scores)):
            raise FloatingPointError(f"non-finite KVM-MN scores for queries {start}..{stop - 1}")
        rescored = np.take_along_axis(candidates, np.argsort(-scores, axis=1, kind="stable"), axis=1)
        ranking = np.concatenate([rescored, order[:, k:]], axis=1)
        block = np.empty(ranking.shape, np.float32)
        np.put_along_axis(block, ranking, np.broadcast_to(np.arange(num_gallery, dtype=np.float32), ranking.shape),
                          axis=1)
        return block


def ranking_distances(model: KVMMN, query: dict, gallery: dict, shortlist: int | None = 100,
                      pair_batch_size: int = 1024, progress: bool = False) -> np.ndarray:
    """The dense [Q, G] float32 matrix of `ShortlistDistances` (only where it fits and is wanted: evaluation goes
    block by block)."""
    return ShortlistDistances(model, query, gallery, shortlist, pair_batch_size).dense(verbose=int(progress))


def evaluate_record(model: KVMMN, record: Record, shortlist: int | None = 100, batch_size: int = 64,
                    pair_batch_size: int = 1024, max_rank: int = 50, scratch_dir: str | None = None,
                    progress: bool = False, chunk_size: int | None = None) -> dict:
    """KVM-MN and its pooled-L2 baseline on `record`'s query and gallery under `record.protocol`.

    Both are evaluated `chunk_size` query rows at a time (default `data.evaluation.default_chunk_size`): memory
    O(chunk_size x G), never the dense [Q, G] matrix.

    Returns {"kvmmn": evaluation dict, "pooled_l2": evaluation dict, "seconds": {"embed", "rank", "evaluate"}} with
    the evaluation dicts of `data.evaluation.evaluate` ("rank": ranking and evaluating KVM-MN, one pass over blocks;
    "evaluate": the pooled-L2 baseline).
    """
    if not record.query or not record.gallery:
        raise ValueError(f"dataset {record.name!r} split {record.split or 'default'!r} has an empty query or gallery "
                         f"list ({len(record.query)} queries, {len(record.gallery)} gallery images)")
    labels = dict(q_pids=[s.pid for s in record.query], g_pids=[s.pid for s in record.gallery],
                  q_camids=[s.camid for s in record.query], g_camids=[s.camid for s in record.gallery])
    seconds = {}
    started = time.perf_counter()
    query = embed_memories(model, record.query, QUERY_FIELDS, batch_size, progress, scratch_dir, "query")
    gallery = embed_memories(model, record.gallery, GALLERY_FIELDS, batch_size, progress, scratch_dir, "gallery")
    seconds["embed"] = time.perf_counter() - started
    started = time.perf_counter()
    # Ranking and evaluating are one pass over blocks of query rows ("rank" times both; "evaluate" the baseline).
    distances = ShortlistDistances(model, query, gallery, shortlist, pair_batch_size)
    result = evaluate_reranked(distances, protocol=record.protocol, max_rank=max_rank, chunk_size=chunk_size,
                               verbose=int(progress), **labels)
    seconds["rank"] = time.perf_counter() - started
    started = time.perf_counter()
    baseline = evaluate_features(query["pooled"], gallery["pooled"], protocol=record.protocol, max_rank=max_rank,
                                 chunk_size=chunk_size, **labels)
    seconds["evaluate"] = time.perf_counter() - started
    return {"kvmmn": result, "pooled_l2": baseline, "seconds": seconds}


def average_results(results: list[dict]) -> dict:
    """The mean over splits of evaluation dicts (CMC, mAP and mINP averaged; query counts summed)."""
    if not results:
        raise ValueError("no results to average")
    return {"cmc": np.mean([r["cmc"] for r in results], axis=0),
            "mAP": float(np.mean([r["mAP"] for r in results])),
            "mINP": float(np.mean([r["mINP"] for r in results])),
            "num_queries": int(sum(r["num_queries"] for r in results)),
            "num_skipped": int(sum(r["num_skipped"] for r in results))}


def to_json(result: dict, ranks=(1, 5, 10, 20)) -> dict:
    """An evaluation dict as JSON-ready values: the CMC list, `rank-k` entries, mAP, mINP and counts."""
    cmc = [float(v) for v in result["cmc"]]
    return {**{f"rank-{r}": cmc[r - 1] for r in ranks if r <= len(cmc)}, "mAP": float(result["mAP"]),
            "mINP": float(result["mINP"]), "cmc": cmc, "num_queries": int(result["num_queries"]),
            "num_skipped": int(result["num_skipped"])}


def evaluate_checkpoint(checkpoint: str, *, dataset: str | None = None, data_root: str | None = None,
                        split: str | None = None, dataset_options: dict | None = None, shortlist: int | None = 100,
                        batch_size: int = 64, pair_batch_size: int = 1024, max_rank: int = 50,
                        scratch_dir: str | None = None, progress: bool = False) -> dict:
    """Evaluate a kvmmn-train run on a dataset's protocol, averaging its evaluation splits (CUHK03, CUHK01).

    checkpoint: the run's train_dir or a checkpoint prefix; CUHK03 / CUHK01 train one model per split, so for
      several splits it must contain "{split}", replaced by each split's name (e.g. "runs/cuhk03/{split}").
    dataset, data_root, dataset_options: default to the run's own (`kvmmn_config.json`).
    split: evaluate this split only; default every split of `data.datasets.eval_splits`.
    Returns a JSON-ready dict: dataset, protocol, shortlist, "params" (every setting the evaluation ran with,
    the run's defaults resolved), per-split results ("kvmmn" and "pooled_l2" with CMC, mAP, mINP; checkpoint,
    step, seconds) and their "mean".
    """
    from kvmmn.training import load_trained_model, read_run_config

    pattern = "{split}" in checkpoint
    run = None if pattern and split is None else read_run_config(checkpoint.replace("{split}", str(split)))
    dataset = dataset or (run.dataset if run else None)
    if dataset is None:
        raise ValueError("with a '{split}' checkpoint pattern, name the dataset to evaluate on")
    data_root = data_root if data_root is not None else (run.data_root if run and run.dataset == dataset else "")
    if dataset_options is None:
        dataset_options = run.dataset_options if run and run.dataset == dataset else {}
    splits = (split,) if split is not None else datasets.eval_splits(dataset, **dataset_options)
    if len(splits) > 1 and "{split}" not in checkpoint:
        raise ValueError(f"{dataset} is evaluated on {len(splits)} splits, each with its own trained model: pass a "
                         f"checkpoint containing '{{split}}' (e.g. runs/{dataset}/{{split}}) or one --split")
    per_split, kvmmn_results, baseline_results = {}, [], []
    for name in splits:
        path = checkpoint.replace("{split}", str(name))
        model, run, checkpoint_path, step = load_trained_model(path)
        if run.dataset == dataset and run.split is not None and name is not None and run.split != name:
            raise ValueError(f"{checkpoint_path} was trained on split {run.split!r} of {dataset}, whose test "
                             f"identities differ from split {name!r}'s")
        record = datasets.load(dataset, data_root, split=name, **dataset_options)
        logging.info("evaluating %s (step %d) on %s", checkpoint_path, step, record.summary())
        result = evaluate_record(model, record, shortlist, batch_size, pair_batch_size, max_rank, scratch_dir,
                                 progress)
        kvmmn_results.append(result["kvmmn"])
        baseline_results.append(result["pooled_l2"])
        per_split[str(name if name is not None else record.split or "default")] = {
            "checkpoint": checkpoint_path, "step": step, "kvmmn": to_json(result["kvmmn"]),
            "pooled_l2": to_json(result["pooled_l2"]), "seconds": result["seconds"]}
    params = {"checkpoint": checkpoint, "dataset": dataset, "data_root": data_root,
              "splits": [None if name is None else str(name) for name in splits],
              "dataset_options": dict(dataset_options), "shortlist": "all" if shortlist is None else shortlist,
              "batch_size": batch_size, "pair_batch_size": pair_batch_size, "max_rank": max_rank,
              "scratch_dir": scratch_dir}
    return {"dataset": dataset, "protocol": record.protocol, "shortlist": "all" if shortlist is None else shortlist,
            "params": params, "splits": per_split, "mean": {"kvmmn": to_json(average_results(kvmmn_results)),
                                          "pooled_l2": to_json(average_results(baseline_results))}}
