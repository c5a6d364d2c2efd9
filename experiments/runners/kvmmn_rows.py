"""KVM-MN rows (Tables 1 and 3): for every evaluation split, train a KVM-MN with `kvmmn.training.train` (as
`kvmmn-train`) and evaluate it with `kvmmn.retrieval.evaluate_record` (as `kvmmn-eval`); average over the splits.

Row settings: `model` (`kvmmn.model.KVMMNConfig` fields), `train` (`kvmmn.training.TrainConfig` fields) and
`shortlist` ("all" or the number of L2-nearest gallery images re-scored per query). Paper scale adds the TF-slim
Inception V1 checkpoint (`Context.inception_checkpoint`) and the strategy.

Each run trains in `<work>/kvmmn/<data>-<split>-<digest>`, the digest covering the whole training configuration,
so identical configurations share a run and a killed run resumes from its checkpoint. The evaluation of a
finished run is kept there (`evaluation.json`, with the step it evaluated) and reused.

Smoke scale keeps each row's structure (heads, K = V, position embedding, M, mining, loss, augmentation) at toy
size: the "tiny" backbone on 64 x 32 images, every width divided by 8, batches of 4, and step and sample counts
scaled from the row's (100K steps -> 10, 100K combinations -> 40).
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import os

import numpy as np

from engine import atomic
from experiments.runners import RowResult
from kvmmn.model import KVMMNConfig
from kvmmn.retrieval import average_results, evaluate_record, parse_shortlist, to_json
from kvmmn.training import TrainConfig, load_trained_model, train

EVALUATION_FILE = "evaluation.json"
SMOKE_IMAGE_SIZE = (64, 32)
SMOKE_WIDTH_DIVISOR = 8
PAPER_STEPS = TrainConfig.__dataclass_fields__["max_steps"].default
PAPER_SAMPLES = TrainConfig.__dataclass_fields__["num_samples"].default


def smoke_settings(model: dict, train_fields: dict) -> tuple[dict, dict]:
    """A row's model and training fields at smoke scale (see the module docstring)."""
    base = KVMMNConfig()
    model = dict(model)
    for field in ("feature_dim", "key_dim", "value_dim"):
        model[field] = max(1, model.get(field, getattr(base, field)) // SMOKE_WIDTH_DIVISOR)
    model.update(backbone="tiny", image_size=SMOKE_IMAGE_SIZE, score_hidden_units=32)
    steps = train_fields.get("max_steps", PAPER_STEPS)
    samples = train_fields.get("num_samples", PAPER_SAMPLES)
    train_fields = {**train_fields, "max_steps": max(2, round(steps * 1e-4)),
                    "num_samples": max(16, round(samples * 4e-4)), "batch_size": 4, "embed_batch_size": 64}
    return model, train_fields


def train_config(row, context, spec, split) -> TrainConfig:
    """The TrainConfig of `row` on `split` of `spec` (already `context.data`), without its train_dir."""
    model, fields = dict(row.settings.get("model", {})), dict(row.settings.get("train", {}))
    if context.smoke:
        model, fields = smoke_settings(model, fields)
    else:
        fields.setdefault("pretrained", context.inception_checkpoint)
    steps = fields.get("max_steps", PAPER_STEPS)
    return TrainConfig(train_dir="", dataset=spec.dataset, data_root=context.root(spec.dataset), split=split,
                       dataset_options=dict(spec.options), model=KVMMNConfig(**model), strategy=context.strategy,
                       checkpoint_every=max(1, min(5000, steps // 2)), show_progress=bool(context.verbose),
                       seed=context.seed, **fields)


def run_directory(context, spec, split, config: TrainConfig) -> str:
    """`<work>/kvmmn/<data>-<split>-<digest of the configuration>` (see the module docstring)."""
    values = {k: v for k, v in config.to_dict().items() if k not in TrainConfig.RESUMABLE_CHANGES}
    digest = hashlib.sha256(json.dumps(values, sort_keys=True, default=str).encode()).hexdigest()[:12]
    split_name = "all" if split is None else str(split).replace("/", "_")
    return context.work("kvmmn", f"{spec.label}-{split_name}-{digest}")


def _evaluate_split(context, spec, split, config: TrainConfig, shortlist) -> dict:
    train(config)
    model, _, checkpoint, step = load_trained_model(config.train_dir)
    path = os.path.join(config.train_dir, EVALUATION_FILE)
    if os.path.isfile(path):
        with open(path) as handle:
            stored = json.load(handle)
        if stored.get("step") == step and stored.get("shortlist") == str(shortlist):
            return stored["result"]
    record = context.load(spec, split)
    result = to_json(evaluate_record(model, record, shortlist=shortlist, progress=bool(context.verbose))["kvmmn"])
    atomic.write_text(path, json.dumps({"step": step, "checkpoint": checkpoint, "shortlist": str(shortlist),
                                        "result": result}))
    return result


def run_row(row, context) -> RowResult:
    spec = context.data(row.data)
    shortlist = parse_shortlist(row.settings.get("shortlist", "all"))
    results, runs = [], []
    for split in context.splits(row.data):
        config = train_config(row, context, spec, split)
        config = dataclasses.replace(config, train_dir=run_directory(context, spec, split, config))
        results.append(_evaluate_split(context, spec, split, config, shortlist))
        runs.append(config.train_dir)
    mean = average_results([{**r, "cmc": np.asarray(r["cmc"])} for r in results])
    values = {f"rank-{k}": 100 * float(mean["cmc"][k - 1]) for k in (1, 5, 10)}
    values["mAP"] = 100 * float(mean["mAP"])
    return RowResult(values, {"runs": runs, "splits": len(results),
                              "shortlist": "all" if shortlist is None else shortlist})
