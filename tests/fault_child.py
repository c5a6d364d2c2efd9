"""A tiny training run of one of the three trainers, for tests that kill it (`engine.faults`, REID_FAULT) and
restart it: `python tests/fault_child.py <kvmmn|baseline|acp> <train_dir> [<synthetic data root> [<strategy>]]`
(`multi_worker` reads TF_CONFIG, as the binaries do).

Each run is seeded as the binaries seed (`engine.seed.set_seed`) and small enough to start, train a few steps and
save a checkpoint every 2 steps in a few seconds; dropout, augmentation and hard-negative mining are on, so that
every source of randomness a real run has must survive the restart.
"""
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import numpy as np  # noqa: E402

MAX_STEPS = 6
CHECKPOINT_EVERY = 2
SYNTHETIC = dict(num_identities=12, num_cameras=3, min_cameras=2, min_images_per_camera=2, max_images_per_camera=3,
                 num_distractors=2, num_junk=1, height=32, width=16)


def loop(train_dir):
    from engine.train_loop import LoopConfig

    return LoopConfig(train_dir, MAX_STEPS, checkpoint_every=CHECKPOINT_EVERY, log_every=2, show_progress=False)


def run_kvmmn(train_dir, data_root, strategy="one_device"):
    from kvmmn.model import KVMMNConfig
    from kvmmn.training import TrainConfig, train

    model = KVMMNConfig(backbone="tiny", image_size=(32, 16), feature_dim=8, num_heads=2, key_dim=4, value_dim=4,
                        score_hidden_units=8, seed=1)
    train(TrainConfig(train_dir, data_root=data_root, dataset_options=SYNTHETIC, model=model, gallery_size=3,
                      batch_size=2, mining="hard", num_samples=0, refresh_every=3, max_steps=MAX_STEPS,
                      checkpoint_every=CHECKPOINT_EVERY, log_every=2, show_progress=False, seed=3,
                      strategy=strategy))


def small_backbone(input_shape, config):
    """The baseline's backbone here (`features.backbone.register_backbone`): three strided convolutions with batch
    norm, 4, 6 and 8 channels wide (no bias before a batch norm, which cancels it: its gradient would be rounding
    noise, which Adam scales to full steps). A ResNet (even of one block per stage) takes ~30 s to trace under two
    workers' cross-replica batch norm on this machine; this keeps what the runs test (batch norm statistics,
    pooled blocks, BNNeck, triplet mining) in a few seconds."""
    import keras

    images = keras.Input(input_shape)
    x, blocks = images, []
    for index, width in enumerate((4, 6, 8)):
        x = keras.layers.Conv2D(width, 3, strides=2, padding="same", use_bias=False, name=f"small_{index}")(x)
        x = keras.layers.ReLU()(keras.layers.BatchNormalization(name=f"small_{index}_bn")(x))
        blocks.append(x)
    return keras.Model(images, blocks, name="small")


def run_baseline(train_dir, data_root, strategy="one_device"):
    from data import datasets
    from engine import distribute, seed
    from features.backbone import register_backbone
    from features.head import ModelConfig
    from features.recipe import Recipe
    from features.training import train

    strategy = distribute.make_strategy(strategy)  # first: MultiWorkerMirroredStrategy must precede other ops
    seed.set_seed(3)
    register_backbone("fault_child_small", small_backbone, replace=True)  # this file may be loaded twice
    record = datasets.load("synthetic", data_root, progress=False, **SYNTHETIC)
    config = ModelConfig(num_classes=record.num_train_pids, image_size=(32, 16), backbone="fault_child_small")
    recipe = Recipe(num_identities=4, num_instances=2, epochs=1, warmup_epochs=1, decay_epochs=(1,))
    train(record, config, recipe, loop(train_dir), strategy, seed=3)


def run_acp(train_dir, data_root=None, seed=3):
    from acp import model as acp_model
    from acp import sequences, training
    from engine import distribute
    from engine import seed as engine_seed
    from features.feature_file import FeatureSet

    engine_seed.set_seed(seed)
    rng = np.random.default_rng(0)
    pids = np.repeat(np.arange(8), 4)
    embedding = (4.0 * np.eye(8)[pids] + rng.normal(size=(len(pids), 8))).astype(np.float32)
    features = FeatureSet(embedding=embedding, pid=pids, camid=np.arange(len(pids)) % 3,
                          split=np.zeros(len(pids), np.int8), origin="fault_child")
    config = acp_model.make_config("basic", num_layers=1, memory_size=4, num_heads=2, memory_dim=8, model_dim=16,
                                   use_fusion=False, transformer_dropout=0.3)
    recipe = training.Recipe(batch_size=4, learning_rate=2e-3, warmup_epochs=1, epochs=1,
                             sequences=sequences.SequenceConfig(num_neighbours=10, length=5, num_false=3))
    training.train(features, loop(train_dir), "basic", config, recipe, distribute.make_strategy("one_device"),
                   seed=seed, verbose=0)


RUNS = {"kvmmn": run_kvmmn, "baseline": run_baseline, "acp": run_acp}

if __name__ == "__main__":
    RUNS[sys.argv[1]](*sys.argv[2:])
