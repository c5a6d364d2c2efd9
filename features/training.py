"""Training and restoring the re-ID baseline (`features.head`) with its recipe (`features.recipe`): the P x K
batches of `features.sampler` with their augmentation, held-out validation, the model configuration saved beside
the checkpoints, and `restore_model`, through which every binary, runner and figure loads a trained baseline."""
from __future__ import annotations

import dataclasses
import os

import keras
import numpy as np
import tensorflow as tf
from absl import logging

from data.pipeline import augment_and_normalize, decode, make_dataset, resize
from engine import checkpoints, distribute, precision, run_dir, validation
from engine.train_loop import Trainer, steps_dataset
from features.head import ModelConfig, build_baseline, feature_extractor
from features.recipe import Recipe, make_loss_fn
from features.sampler import PKSampler
from rerank.evaluation import evaluate_features

MODEL_CONFIG_FILE = "baseline_config.json"
TOOL = "acp-baseline-train"  # the owner named in its train_dir's marker (`engine.run_dir`)


def save_model_config(config: ModelConfig, directory: str, seed: int | None = None) -> str:
    """Write `config` (and the training `seed`, when given) to `directory/MODEL_CONFIG_FILE`; a different config or
    seed already there is an error."""
    path = os.path.join(directory, MODEL_CONFIG_FILE)

    def differences(stored: dict) -> list[str]:
        existing, stored_seed = _config_from(stored, path), stored.get("seed")
        return ([] if existing == config else [f"{existing}, not {config}"]) + (
            [f"--seed={stored_seed}, not --seed={seed}"]
            if None not in (seed, stored_seed) and stored_seed != seed else [])

    os.makedirs(directory, exist_ok=True)
    content = {**dataclasses.asdict(config), **({} if seed is None else {"seed": seed})}
    return run_dir.write_or_check_config(directory, MODEL_CONFIG_FILE, content, differences,
                                         what="model configuration")


def load_model_config(directory: str) -> ModelConfig:
    path = os.path.join(directory, MODEL_CONFIG_FILE)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{path} not found: is {directory} the --train_dir of acp-baseline-train?")
    return _config_from(run_dir.read_json(path), path)


def _config_from(fields: dict, path: str) -> ModelConfig:
    fields = {name: value for name, value in fields.items() if name != "seed"}  # the run's, not the model's
    try:
        return ModelConfig(**fields)
    except TypeError as err:
        raise ValueError(f"{path}: not a baseline model configuration ({err})") from None


def make_train_data(samples, sampler: PKSampler, image_size, seed: int, stop_step: int, recipe: Recipe):
    """`make_data(start_step)` for the engine: the P x K batches (images, labels, camids) of the steps from
    `start_step` to `stop_step`.

    Everything about a step's batch is a function of (seed, step): the sampler's images and the stateless seed of
    its augmentation (flip, random erasing), so a resumed run sees exactly the batches of an uninterrupted one.
    """
    paths = tf.constant([s.path for s in samples])
    labels = tf.constant([s.pid for s in samples], tf.int32)
    camids = tf.constant([s.camid for s in samples], tf.int32)
    batch = sampler.batch_size
    signature = (tf.TensorSpec([], tf.int64), tf.TensorSpec([batch], tf.int64))

    def load(step, index):
        return step, resize(decode(tf.gather(paths, index)), image_size), tf.gather(labels, index), \
            tf.gather(camids, index)

    def augment(steps, images, batch_labels, batch_camids):
        step_seed = tf.stack([tf.constant(seed, tf.int64), steps[0]])
        images = augment_and_normalize(images, "imagenet", step_seed, flip=recipe.flip,
                                       random_erasing=recipe.random_erasing)
        return images, batch_labels, batch_camids

    def make_data(start_step: int) -> tf.data.Dataset:
        steps = steps_dataset(lambda step: (np.int64(step), sampler.indices(step)), start_step, stop_step,
                              signature)
        images = steps.flat_map(lambda step, index: tf.data.Dataset.from_tensor_slices(
            (tf.fill([batch], step), index)))
        images = images.map(load, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
        return images.batch(batch, drop_remainder=True).map(augment).prefetch(1)

    return make_data


def make_validation(model: keras.Model, query, gallery, image_size, batch_size: int = 64):
    """`validate() -> {mAP, rank1, mINP}` of the test-time embedding (cosine distance) of `model` as it is when
    called, on held-out training identities' query and gallery samples (`engine.validation`)."""
    extractor = feature_extractor(model)
    forward = tf.function(lambda images: extractor(images, training=False)["embedding"],
                          input_signature=[tf.TensorSpec([None, *image_size, 3], tf.float32)])

    def embed(samples):
        return np.concatenate([forward(images).numpy() for images, _, _ in
                               make_dataset(samples, image_size=image_size, normalization="imagenet",
                                            batch_size=batch_size)])

    def validate() -> dict[str, float]:
        result = evaluate_features(embed(query), embed(gallery), [s.pid for s in query], [s.pid for s in gallery],
                                   [s.camid for s in query], [s.camid for s in gallery], metric="cosine")
        return validation.retrieval_scalars(result)

    return validate


def train(record, model_config: ModelConfig, recipe: Recipe, loop_config, strategy, pretrained: str | None = None,
          seed: int = 0) -> dict:
    """Train (or resume training) the baseline on `record.train`; returns the Trainer's result plus "model".

    `loop_config.max_steps` 0 means `recipe.epochs` epochs. The global batch P*K is split evenly over the replicas
    (it must divide); with several replicas (`--strategy=mirrored` or `multi_worker`) every batch norm computes its
    statistics over all of them and each replica mines its triplets in the whole global batch, so a step on R
    replicas equals a step on one device with the same P x K batch (`tests/test_faults_multiworker.py`); XLA cannot
    compile those cross-replica reductions. The train_dir is
    acp-baseline-train's own (`engine.run_dir.claim`: a user's or another tool's folder is refused first); a run
    killed anywhere and restarted ends bit-identical to an uninterrupted one (`tests/test_faults.py`).
    With `recipe.eval_every` > 0 a few training identities are held out (`engine.validation`, drawn with `seed`)
    and evaluated every `eval_every` steps (`make_validation`); the classifier then has one class per identity
    trained on.
    """
    run_dir.prepare(loop_config.train_dir, TOOL, MODEL_CONFIG_FILE)  # before any work
    if recipe.eval_every:
        train_samples, held_out = validation.split_samples(record.train, seed)
        record = dataclasses.replace(record, train=train_samples)
        model_config = dataclasses.replace(model_config, num_classes=record.num_train_pids)
        validation_query, validation_gallery = validation.split_query_gallery(held_out)
    labels = [s.pid for s in record.train]
    if not 0 <= min(labels) <= max(labels) < model_config.num_classes:
        raise ValueError(f"{record.name} training labels span {min(labels)}..{max(labels)}, outside the "
                         f"{model_config.num_classes} classes of the model configuration")
    sampler = PKSampler(labels, recipe.num_identities, recipe.num_instances, seed)
    replicas = strategy.num_replicas_in_sync
    if sampler.batch_size % replicas:
        raise ValueError(f"P x K = {sampler.batch_size} images per batch do not split evenly over {replicas} "
                         f"replicas: choose P or K so that {replicas} divides their product")
    if loop_config.xla and replicas > 1:
        raise ValueError(f"--xla cannot compile the cross-replica batch norm and triplet mining of {replicas} "
                         "replicas: use --noxla")
    if loop_config.max_steps == 0:
        loop_config = dataclasses.replace(loop_config, max_steps=recipe.epochs * sampler.steps_per_epoch)
    save_model_config(model_config, loop_config.train_dir, seed)
    if not pretrained:
        logging.warning("no --pretrained weights: the ResNet backbone starts from random initialisation")
    with strategy.scope():
        model = build_baseline(model_config, pretrained)
        if replicas > 1:
            logging.info("cross-replica batch norm in %d layers", distribute.use_cross_replica_batchnorm(model))
        optimizer = precision.wrap_optimizer(keras.optimizers.Adam(recipe.schedule(sampler.steps_per_epoch)))
    hooks = [validation.EvalHook(make_validation(model, validation_query, validation_gallery,
                                                 model_config.image_size), recipe.eval_every)] \
        if recipe.eval_every else []
    trainer = Trainer(strategy, model, optimizer, loop_config, loss_fn=make_loss_fn(recipe), hooks=hooks)
    make_data = make_train_data(record.train, sampler, model_config.image_size, seed, loop_config.max_steps, recipe)
    return {**trainer.fit(make_data), "model": model}


def restore_model(checkpoint: str) -> tuple[keras.Model, ModelConfig, str]:
    """The trained baseline from a training directory (its newest readable checkpoint) or a checkpoint prefix.

    Returns (model, config, checkpoint path). The model configuration is read from the training directory's
    MODEL_CONFIG_FILE; a checkpoint that does not fit it is an error naming both; an unreadable one is an
    `engine.run_dir.CorruptCheckpointError` naming its file.
    """
    directory, path = run_dir.resolve(checkpoint)
    config = load_model_config(directory)
    model = build_baseline(config)
    try:
        checkpoints.restore(tf.train.Checkpoint(model=model), path)
    except (ValueError, tf.errors.InvalidArgumentError) as err:
        raise ValueError(f"checkpoint {path} does not fit the model of {directory}/{MODEL_CONFIG_FILE}: {err}") \
            from None
    return model, config, path
