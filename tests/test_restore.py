"""Every trained model comes back whole, on every path that loads it.

Each model (ACP with and without multi-block fusion, KVM-MN, the ResNet baseline) is trained a few real steps by its
real training function and the engine's Trainer. Then:
  - its public loader (`acp.checkpoint.restore_model`, `kvmmn.training.load_trained_model`,
    `features.training.restore_model`, through which every binary, demo, runner and figure loads the model) restores
    into a model whose every weight was first overwritten with a sentinel: every weight must equal its trained value;
  - a resumed run (the same training function on the same train_dir: `Trainer.restore`) restores into a model and
    optimizer overwritten with sentinels: every model and optimizer variable and the step must be the trained ones;
  - `acp-rerank --method=acp` run in two processes writes identical metrics and top lists;
  - a checkpoint lacking a variable, and a variable the checkpoint graph cannot reach, are errors naming them.
"""
import contextlib
import json
import os
import re
import subprocess
import sys

import keras
import numpy as np
import pytest
import tensorflow as tf

from acp import checkpoint as acp_checkpoint
from acp import model as acp_model
from acp import sequences
from acp import training as acp_training
from data import datasets
from engine import checkpoints, distribute, train_loop
from engine.train_loop import LoopConfig
from features import feature_file
from features import training as baseline_training
from features.head import ModelConfig, build_baseline
from features.recipe import Recipe
from kvmmn import training as kvmmn_training
from kvmmn.model import KVMMNConfig
from rerank.synthetic import clustered_embeddings

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SENTINEL = 1234.5  # no trained value is this; integer variables (step, iterations) get 1234
STEPS = 3
ACP_TINY = dict(num_layers=2, memory_size=2, num_heads=2, memory_dim=4, model_dim=8, fusion_dropout=0.0,
                transformer_dropout=0.0)
ACP_RECIPE = acp_training.Recipe(batch_size=8, learning_rate=2e-3, epochs=1, warmup_epochs=0,
                                 sequences=sequences.SequenceConfig(num_neighbours=20, length=8, num_false=4))
KVMMN_TINY = KVMMNConfig(backbone="tiny", image_size=(64, 32), feature_dim=16, num_heads=2, key_dim=4, value_dim=4,
                         score_hidden_units=8, seed=1)
SYNTHETIC = dict(num_identities=16, num_cameras=3, min_cameras=2, max_images_per_camera=3, num_distractors=4,
                 num_junk=1, height=64, width=32)
MODELS = ("acp_fusion", "acp_no_fusion", "kvmmn", "baseline")


def values(variables):
    return [np.array(keras.ops.convert_to_numpy(v)) for v in variables]


def fill_with_sentinel(variables):
    for variable, value in zip(variables, values(variables)):
        variable.assign(np.full_like(value, SENTINEL))


def same_names(names):
    """Variable paths without the numbers Keras appends to repeated names (a second `kvmmn` is `kvmmn_1`)."""
    return [re.sub(r"_\d+(?=[/_])", "", name) for name in names]


def assert_all_equal(variables, expected_names, expected_values, what):
    """Every variable equals its expected value, by position and name; returns how many were compared."""
    names = [getattr(v, "path", None) or v.name for v in variables]
    assert same_names(names) == same_names(expected_names), what
    differ = [name for name, got, want in zip(names, values(variables), expected_values)
              if not np.array_equal(got, want)]
    assert not differ, f"{what}: {len(differ)} of {len(names)} variables differ from the trained ones: {differ}"
    return len(names)


class Run:
    """A finished training run: its train_dir, how to run it again, and a copy of the trained variables."""

    def __init__(self, train_dir, again, trainer, **extra):
        self.train_dir, self.again, self.extra = train_dir, again, extra
        self.model_names = [v.path for v in trainer.model.weights]
        self.model_values = values(trainer.model.weights)
        self.optimizer_names = [v.path for v in trainer.optimizer.variables]
        self.optimizer_values = values(trainer.optimizer.variables)
        self.step = int(trainer.step.numpy())


@contextlib.contextmanager
def recorded_trainers(module):
    """`module.Trainer` replaced by the real Trainer that remembers itself and, before restoring an existing
    checkpoint, overwrites every model and optimizer variable and its step with the sentinel."""
    made = []

    class RecordingTrainer(train_loop.Trainer):
        def restore(self):
            made.append(self)
            if tf.train.latest_checkpoint(self.config.train_dir):
                fill_with_sentinel([*self.model.weights, *self.optimizer.variables, self.step])
            return super().restore()

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(module, "Trainer", RecordingTrainer)
        yield made


def train_and_record(module, train):
    with recorded_trainers(module) as made:
        train()
    assert len(made) == 1
    return made[0]


def write_feature_file(path):
    """Train, query and gallery rows; f3/f4/f5 are random projections of clustered embeddings."""
    train, test = (clustered_embeddings(n, dim=16, images_per_identity=6, noise=1.2, seed=s) for n, s in ((48, 1),
                                                                                                          (60, 0)))
    embedding = np.concatenate([train.query, train.gallery, test.query, test.gallery])
    rng = np.random.default_rng(0)
    blocks = {name: (embedding @ rng.normal(size=(16, width)) / 4.0).astype(np.float32)
              for name, width in feature_file.RESNET50_BLOCK_WIDTHS.items()}
    feature_file.save_features(str(path), feature_file.FeatureSet(
        embedding=embedding, pid=np.concatenate([train.q_pids, train.g_pids, test.q_pids, test.g_pids]),
        camid=np.concatenate([train.q_camids, train.g_camids, test.q_camids, test.g_camids]),
        split=np.repeat([0, 1, 2], [48, len(test.query), len(test.gallery)]),
        path=np.array([f"img_{i}.jpg" for i in range(len(embedding))]), dataset="market1501", **blocks))
    return str(path)


def train_acp(root, use_fusion):
    feature_path = str(root / "features.npz")
    if not os.path.exists(feature_path):
        write_feature_file(feature_path)
    train_dir = str(root / f"acp_fusion_{use_fusion}")
    config = acp_model.make_config("basic", **ACP_TINY, use_fusion=use_fusion)

    def train():
        acp_training.train(feature_file.load_features(feature_path),
                           LoopConfig(train_dir, STEPS, checkpoint_every=100, log_every=100, show_progress=False),
                           "basic", config, ACP_RECIPE, verbose=0)

    return Run(train_dir, train, train_and_record(acp_training, train), feature_file=feature_path)


def train_kvmmn(root, data_root):
    config = kvmmn_training.TrainConfig(
        train_dir=str(root / "kvmmn"), data_root=data_root, model=KVMMN_TINY, gallery_size=4, batch_size=4,
        max_steps=STEPS, num_samples=0, num_neighbors=10, checkpoint_every=100, log_every=100, show_progress=False,
        learning_rate=0.05, dataset_options=SYNTHETIC)

    def train():
        kvmmn_training.train(config)

    return Run(config.train_dir, train, train_and_record(kvmmn_training, train))


def train_baseline(root, data_root):
    record = datasets.load("synthetic", data_root, progress=False, **SYNTHETIC)
    config = ModelConfig(num_classes=record.num_train_pids, image_size=(64, 32), blocks=(1, 1, 1, 1))
    recipe = Recipe(num_identities=4, num_instances=2, epochs=1, warmup_epochs=0, decay_epochs=())
    train_dir = str(root / "baseline")

    def train():
        loop = LoopConfig(train_dir, STEPS, checkpoint_every=100, log_every=100, show_progress=False)
        baseline_training.train(record, config, recipe, loop, distribute.make_strategy("one_device"))

    return Run(train_dir, train, train_and_record(baseline_training, train))


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """The four trained runs, trained on first use."""
    root = tmp_path_factory.mktemp("restore")
    trained = {}

    def get(name):
        if name not in trained:
            if name.startswith("acp"):
                trained[name] = train_acp(root, use_fusion=name == "acp_fusion")
            else:
                data_root = str(root / "synthetic")
                if not os.path.isdir(data_root):
                    datasets.load("synthetic", data_root, progress=False, **SYNTHETIC)
                trained[name] = (train_kvmmn if name == "kvmmn" else train_baseline)(root, data_root)
        return trained[name]

    return get


def sentinel_builder(build, calls):
    """`build`, then every weight of what it built overwritten with the sentinel."""

    def built(*args, **kwargs):
        model = build(*args, **kwargs)
        fill_with_sentinel(model.weights)
        calls.append(model)
        return model

    return built


@pytest.mark.parametrize("name", MODELS)
def test_public_loader_restores_every_trained_weight(runs, name, monkeypatch):
    run = runs(name)
    built = []
    if name.startswith("acp"):
        monkeypatch.setattr(acp_model, "build_acp", sentinel_builder(acp_model.build_acp, built))
        model = acp_checkpoint.restore_model(run.train_dir)[0]
    elif name == "kvmmn":
        monkeypatch.setattr(kvmmn_training, "KVMMN", sentinel_builder(kvmmn_training.KVMMN, built))
        model, _, _, step = kvmmn_training.load_trained_model(run.train_dir)
        assert step == run.step == STEPS
    else:
        monkeypatch.setattr(baseline_training, "build_baseline", sentinel_builder(build_baseline, built))
        model = baseline_training.restore_model(run.train_dir)[0]
    assert built == [model]  # the loader restored into the sentinel-filled model
    compared = assert_all_equal(model.weights, run.model_names, run.model_values, f"{name} restored")
    assert compared == len(model.weights) == len(run.model_values) > 0


@pytest.mark.parametrize("name", MODELS)
def test_resumed_training_restores_every_model_and_optimizer_variable(runs, name):
    run = runs(name)
    module = {"kvmmn": kvmmn_training, "baseline": baseline_training}.get(name, acp_training)
    resumed = train_and_record(module, run.again)  # max_steps reached: restore (over sentinels), nothing to train
    assert int(resumed.step.numpy()) == run.step == STEPS
    compared = assert_all_equal(resumed.model.weights, run.model_names, run.model_values, f"{name} model resumed")
    assert compared == len(resumed.model.weights)
    compared = assert_all_equal(resumed.optimizer.variables, run.optimizer_names, run.optimizer_values,
                                f"{name} optimizer resumed")
    assert compared == len(resumed.optimizer.variables) > 0


def rerank_in_a_process(feature_file, train_dir, out):
    os.makedirs(out)
    command = [sys.executable, "-m", "acp.cli.rerank", f"--features={feature_file}", "--method=acp",
               f"--checkpoint={train_dir}", f"--output_json={out}/result.json", f"--top_list={out}/top.npz",
               "--top_k=20", "--verbose=0", "--metric=cosine", "--max_rank=20"]
    environment = {**os.environ, "PYTHONPATH": REPO + os.pathsep + os.environ.get("PYTHONPATH", "")}
    done = subprocess.run(command, cwd=REPO, env=environment, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    with open(f"{out}/result.json") as handle:
        result = json.load(handle)
    measured = {key: value for key, value in result.items() if key.startswith("seconds") or key == "peak_rss_mb"}
    assert measured  # timings and memory differ between processes by nature; everything else must not
    with np.load(f"{out}/top.npz") as top:
        lists = {key: top[key] for key in top.files}
    return {key: value for key, value in result.items() if key not in measured}, lists


def test_acp_rerank_gives_identical_results_in_two_processes(runs, tmp_path):
    run = runs("acp_fusion")
    first, second = (rerank_in_a_process(run.extra["feature_file"], run.train_dir, str(tmp_path / f"run{i}"))
                     for i in range(2))
    assert first[0] == second[0] and 0.0 < first[0]["mAP"] <= 1.0
    assert first[1].keys() == second[1].keys() and {"gallery", "distance"} <= set(first[1])
    for key in first[1]:
        assert first[1][key].tobytes() == second[1][key].tobytes(), key


# ------------------------------------------------------------------------------------------ strictness
class Scales(keras.layers.Layer):
    """A test layer: a `scale` weight, an `offset` too with `with_offset`, and one more held in a plain list
    (the bug that left ACP's weights out of its checkpoints) with `listed`."""

    def __init__(self, with_offset=False, listed=False, **kwargs):
        super().__init__(**kwargs)
        self.with_offset, self.listed = with_offset, listed

    def build(self, input_shape):
        self.scale = self.add_weight(shape=input_shape[-1:], initializer="ones", name="scale")
        if self.with_offset:
            self.offset = self.add_weight(shape=input_shape[-1:], initializer="zeros", name="offset")
        if self.listed:
            self.extras = [self.add_weight(shape=input_shape[-1:], initializer="zeros", name="listed")]

    def call(self, inputs):
        return inputs * self.scale


def tiny_model(**options):
    inputs = keras.Input((3,))
    return keras.Model(inputs, Scales(name="scales", **options)(keras.layers.Dense(2, name="dense")(inputs)))


def test_a_checkpoint_lacking_a_variable_is_an_error_naming_it(tmp_path):
    prefix = tf.train.Checkpoint(model=tiny_model()).write(str(tmp_path / "ckpt"))
    model = tiny_model(with_offset=True)
    fill_with_sentinel(model.weights)
    with pytest.raises(checkpoints.IncompleteCheckpointError,
                       match=r"(?s)checkpoint .*ckpt does not cover 1 of the 4 variables .*missing scales/offset"):
        checkpoints.restore(tf.train.Checkpoint(model=model), prefix)
    # all or nothing: not even the variables the checkpoint has were changed
    assert all((value == SENTINEL).all() for value in values(model.weights))
    # the full model restores; a wrong shape is named too
    full = tiny_model()
    assert checkpoints.restore(tf.train.Checkpoint(model=full), prefix) == 3
    inputs = keras.Input((3,))
    wider = keras.Model(inputs, Scales(name="scales")(keras.layers.Dense(5, name="dense")(inputs)))
    with pytest.raises(checkpoints.IncompleteCheckpointError, match=r"wrong shape dense/kernel .*\[3, 2\], model "
                                                                     r"\[3, 5\]"):
        checkpoints.restore(tf.train.Checkpoint(model=wider), prefix)


def test_a_variable_the_checkpoint_cannot_reach_is_an_error_naming_it(tmp_path):
    model = tiny_model(listed=True)
    assert len(model.weights) == 4  # Keras sees the listed weight ...
    prefix = tf.train.Checkpoint(model=model).write(str(tmp_path / "ckpt"))  # ... the checkpoint does not
    with pytest.raises(checkpoints.IncompleteCheckpointError, match=r"1 variable\(s\) are not reachable .*: "
                                                                     r"scales/listed$"):
        checkpoints.restore(tf.train.Checkpoint(model=model), prefix)


def test_public_loaders_and_resume_refuse_a_checkpoint_lacking_a_variable(runs, tmp_path):
    run = runs("acp_fusion")
    # a train_dir whose configuration has memory refinement, holding a checkpoint of a model without it
    preset, config = acp_checkpoint.load_config(run.train_dir)
    acp_checkpoint.save_config(str(tmp_path), preset, config)
    tf.train.Checkpoint(model=acp_model.build_acp(config.replace(use_refinement=False))).write(
        str(tmp_path / "ckpt-1"))
    with open(tmp_path / "checkpoint", "w") as handle:
        handle.write('model_checkpoint_path: "ckpt-1"\n')
    with pytest.raises(acp_checkpoint.CheckpointMismatchError,
                       match=r"(?s)ckpt-1 does not hold the weights of ACP-basic.*missing memory_refinement/"):
        acp_checkpoint.restore_model(str(tmp_path))
    # resuming from a checkpoint written without the optimizer: every optimizer variable is named
    resumed_dir = tmp_path / "resume"
    os.makedirs(resumed_dir)
    model = acp_model.build_acp(config)
    optimizer = keras.optimizers.Adam()
    tf.train.Checkpoint(model=model, step=tf.Variable(2, dtype=tf.int64)).write(str(resumed_dir / "ckpt-2"))
    with open(resumed_dir / "checkpoint", "w") as handle:
        handle.write('model_checkpoint_path: "ckpt-2"\n')
    trainer = train_loop.Trainer(tf.distribute.get_strategy(), model, optimizer,
                                 LoopConfig(str(resumed_dir), 4, show_progress=False),
                                 loss_fn=acp_training.make_loss_fn(2.0, 0.0))
    # 75 weights and the step are there; the 144 variables of Adam (iterations, rate, 2 x 71 moments) are not
    with pytest.raises(train_loop.RestoreError,
                       match=r"(?s)does not match.*does not cover 144 of the 220 .*missing adam(_\d+)?/iteration"):
        trainer.restore()
