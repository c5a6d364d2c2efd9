"""The feature files (`features.feature_file` schema) the re-ranking rows read: found in the features folder, or made
there by training the re-ID baseline (`features.training.train`, as `acp-baseline-train`) and extracting its features
(`features.extraction.extract`, as `acp-extract`).

File names in `Context.features_dir`:
- `<label>.npz` the query and gallery rows of an evaluation set with one split (e.g. `msmt17.npz`,
  `veriwild_small.npz`); `<label>.<i>.npz` for split i of a set with several (VehicleID's 10 random galleries:
  `vehicleid_small.0.npz` ... `.9.npz`).
- `<dataset>.train.npz` the training rows ACP is trained on, one per dataset (VERI-Wild's S/M/L share it).
  Without it, the training rows of the first test file are used when it has any (a file written by `acp-extract`
  with all subsets, or imported by `acp-import-features`); otherwise it is extracted.

So features from another toolkit are used by putting them there under these names; nothing is extracted then.
At smoke scale everything is the synthetic dataset: `synthetic.npz` and `synthetic.train.npz` from a tiny ResNet
(one bottleneck per stage, 64 x 32 images) trained for `SMOKE_STEPS` steps.
"""
from __future__ import annotations

import os

import tensorflow as tf
from absl import logging

from engine import distribute
from engine.train_loop import LoopConfig
from experiments.tables import DataSpec
from features import extraction
from features import feature_file as feature_io
from features import training as baseline_training
from features.head import ModelConfig
from features.recipe import Recipe

SMOKE_STEPS = 10
SMOKE_MODEL = dict(image_size=(64, 32), blocks=(1, 1, 1, 1))
SMOKE_RECIPE = Recipe(num_identities=4, num_instances=2, epochs=1, warmup_epochs=0, decay_epochs=())


def test_path(context, spec: DataSpec, index: int, count: int) -> str:
    name = spec.label if count == 1 else f"{spec.label}.{index}"
    return os.path.join(context.features_dir, f"{name}.npz")


def train_path(context, spec: DataSpec) -> str:
    return os.path.join(context.features_dir, f"{spec.dataset}.train.npz")


def _baseline(context, spec: DataSpec, record):
    """The trained baseline of `spec.dataset` (trained now unless its run is complete): (model, config, ckpt)."""
    key = ("baseline", spec.dataset)
    if key in context.loaded:
        return context.loaded[key]
    train_dir = context.work("baseline", spec.dataset)
    if context.smoke:
        config = ModelConfig(num_classes=record.num_train_pids, **SMOKE_MODEL)
        recipe, max_steps, pretrained = SMOKE_RECIPE, SMOKE_STEPS, None
    else:
        config = ModelConfig(num_classes=record.num_train_pids)
        recipe, max_steps, pretrained = Recipe(), 0, context.resnet_weights
    logging.info("re-ID baseline of %s in %s", spec.dataset, train_dir)
    loop = LoopConfig(train_dir, max_steps, checkpoint_every=max(1, max_steps) if context.smoke else 1000,
                      log_every=50, show_progress=bool(context.verbose))
    result = baseline_training.train(record, config, recipe, loop, distribute.make_strategy(context.strategy),
                                     pretrained=pretrained, seed=0)
    context.loaded[key] = (result["model"], config, tf.train.latest_checkpoint(train_dir) or "")
    return context.loaded[key]


def _extract(context, spec: DataSpec, split, path: str, subsets: tuple) -> None:
    record = context.load(spec, split)
    model, config, checkpoint = _baseline(context, spec, record)
    logging.info("extracting %s of %s split %s into %s", "/".join(subsets), spec.dataset, split, path)
    extraction.extract(model, config, record, path, checkpoint=checkpoint, subsets=subsets,
                       show_progress=bool(context.verbose))


def test_files(context, spec: DataSpec) -> list:
    """The query + gallery feature file of every evaluation split of `spec` (after `context.data`), made where
    missing. Returns [(split, path)]."""
    spec = context.data(spec)
    splits = context.splits(spec)
    files = []
    for index, split in enumerate(splits):
        path = test_path(context, spec, index, len(splits))
        if not os.path.isfile(path):
            _extract(context, spec, split, path, ("query", "gallery"))
        files.append((split, path))
    return files


def train_features(context, spec: DataSpec) -> feature_io.FeatureSet:
    """The training rows of `spec.dataset` (after `context.data`), from the files described in the module
    docstring, extracted where none has them."""
    spec = context.data(spec)
    path = train_path(context, spec)
    if not os.path.isfile(path):
        first = test_files(context, spec)[0][1]
        rows = feature_io.load_features(first).train
        if len(rows):
            return rows
        _extract(context, spec, context.splits(spec)[0], path, ("train",))
    return feature_io.load_features(path).train
