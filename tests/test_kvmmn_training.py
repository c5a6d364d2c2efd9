"""kvmmn/sampling.py and kvmmn/training.py: set-wise samples, one step, two replicas = one device, resume after a
kill, and the errors on bad input."""
import dataclasses
import json
import os
import shutil
import subprocess
import sys
import threading

import numpy as np
import pytest
import tensorflow as tf

from data.record import DatasetError
from engine.state import ArrayState
from engine.train_loop import RestoreError
from kvmmn.model import KVMMN, KVMMNConfig
from kvmmn.sampling import SamplerClosed, SamplerError, SetwiseSampler
from kvmmn.training import ConfigMismatchError, TrainConfig, check_replicas, load_trained_model, train

TINY = KVMMNConfig(backbone="tiny", image_size=(64, 32), feature_dim=16, num_heads=2, key_dim=4, value_dim=4,
                   score_hidden_units=8, seed=1)
SYNTHETIC = dict(num_identities=16, num_cameras=3, min_cameras=2, max_images_per_camera=3, num_distractors=4,
                 num_junk=1, height=64, width=32)


# --------------------------------------------------------------------------------------------- the sampler
def toy_split():
    """30 identities x 6 images over 3 cameras; identity 0 is seen by camera 0 only."""
    pids = np.repeat(np.arange(30), 6)
    camids = np.tile([0, 0, 1, 1, 2, 2], 30)
    camids[:6] = 0
    return pids, camids


def features_for(pids):
    """Features that put each identity on a line, so that L2 neighbours are mostly the nearest identities."""
    rng = np.random.default_rng(0)
    return np.stack([pids * 1.0, rng.normal(0, 0.3, len(pids))], axis=1).astype("float32")


def test_combinations_have_m_identities_and_a_positive_from_another_camera():
    pids, camids = toy_split()
    sampler = SetwiseSampler(pids, camids, gallery_size=5, batch_size=8, mining="rand", seed=3)
    assert (sampler.skipped_identities, sampler.skipped_images) == (1, 6)
    for step in range(20):
        probes, galleries, labels = sampler.batch(step)
        assert probes.shape == (8,) and galleries.shape == (8, 5) and labels.shape == (8,)
        for probe, gallery, label in zip(probes, galleries, labels):
            assert pids[probe] != 0  # the one-camera identity is never a probe
            assert len(set(pids[gallery])) == 5
            positive = gallery[label]
            assert pids[positive] == pids[probe] and camids[positive] != camids[probe]
            assert np.count_nonzero(pids[gallery] == pids[probe]) == 1
    assert not (pids[sampler.probes] == 0).any() and len(sampler.probes) == 174


def test_hard_negatives_come_from_the_nearest_neighbours():
    pids, camids = toy_split()
    sampler = SetwiseSampler(pids, camids, gallery_size=4, batch_size=16, mining="hard", num_neighbors=30, seed=0)
    report = sampler.mine(features_for(pids), version=0)
    table = sampler.state["neighbors"]
    assert table.shape == (180, 30) and not (table == np.arange(180)[:, None]).any()
    assert report.short_probes == 0 and report.probes == 174
    far = 0
    for step in range(10):
        probes, galleries, labels = sampler.batch(step)
        for probe, gallery, label in zip(probes, galleries, labels):
            negatives = np.delete(gallery, label)
            assert set(negatives) <= set(table[probe])
            far += np.abs(pids[negatives] - pids[probe]).max() > 5
    assert far == 0  # neighbours on the line are at most a few identities away

    # with fewer identities in the neighbourhood than M - 1, the rest are random identities, still distinct
    few = SetwiseSampler(pids, camids, gallery_size=8, batch_size=16, mining="hard", num_neighbors=6, seed=0)
    assert few.mine(features_for(pids), version=0).short_probes == 174
    _, galleries, _ = few.batch(0)
    assert all(len(set(pids[g])) == 8 for g in galleries)


def test_batches_are_a_function_of_seed_step_and_table():
    pids, camids = toy_split()

    def make(seed, **kw):
        sampler = SetwiseSampler(pids, camids, gallery_size=5, batch_size=4, mining="hard", num_neighbors=20,
                                 seed=seed, **kw)
        sampler.mine(features_for(pids), version=0)
        return sampler

    a, b, c = make(1), make(1), make(2)
    for step in (0, 7, 3):
        for x, y in zip(a.batch(step), b.batch(step)):
            np.testing.assert_array_equal(x, y)
    assert any(not np.array_equal(x, y) for x, y in zip(a.batch(0), c.batch(0)))

    # the table travels in the checkpointed state: a fresh sampler restored from it draws the same batches
    restored = SetwiseSampler(pids, camids, gallery_size=5, batch_size=4, mining="hard", num_neighbors=20, seed=1)
    restored.state.deserialize(a.state.serialize())
    assert restored.version == 0
    for x, y in zip(a.batch(11), restored.batch(11)):
        np.testing.assert_array_equal(x, y)

    # a fixed pool of S combinations: every pass over the pool shows each of them once
    pool = SetwiseSampler(pids, camids, gallery_size=5, batch_size=4, mining="rand", num_samples=12, seed=0)
    seen = [tuple(g) for step in range(6) for g in pool.batch(step)[1]]
    assert len(set(seen[:12])) == 12 and set(seen[:12]) == set(seen[12:])


def test_refreshing_sampler_waits_for_the_table_of_its_step():
    pids, camids = toy_split()
    sampler = SetwiseSampler(pids, camids, gallery_size=5, batch_size=2, mining="hard", num_neighbors=20,
                             refresh_every=3, seed=0)
    features = features_for(pids)
    sampler.mine(features, version=0)
    assert sampler.table_version(2) == 0 and sampler.table_version(3) == 1 and sampler.is_refresh_step(3)
    result = {}
    waiting = threading.Thread(target=lambda: result.setdefault("batch", sampler.batch(3)))
    waiting.start()
    waiting.join(timeout=0.5)
    assert waiting.is_alive()  # step 3 needs table v1
    sampler.mine(features[::-1].copy(), version=1)
    waiting.join(timeout=5)
    assert "batch" in result
    sampler.close()
    with pytest.raises(SamplerClosed):
        sampler.batch(6)


def test_sampler_rejects_splits_that_cannot_give_samples():
    pids, camids = toy_split()
    with pytest.raises(SamplerError, match="training split is empty"):
        SetwiseSampler([], [])
    with pytest.raises(SamplerError, match="needs M distinct identities"):
        SetwiseSampler(pids[:24], camids[:24], gallery_size=5)
    with pytest.raises(SamplerError, match="seen by two cameras"):
        SetwiseSampler(pids, np.zeros_like(camids))
    with pytest.raises(SamplerError, match="mining"):
        SetwiseSampler(pids, camids, mining="semi-hard")


# --------------------------------------------------------------------------------------------- training
@pytest.fixture(scope="module")
def synthetic_root(tmp_path_factory):
    from data import datasets

    root = str(tmp_path_factory.mktemp("synthetic"))
    datasets.load("synthetic", root, progress=False, **SYNTHETIC)
    return root


def tiny_config(root, train_dir, **overrides):
    values = dict(train_dir=str(train_dir), data_root=root, model=TINY, gallery_size=4, batch_size=4, max_steps=1,
                  num_samples=0, num_neighbors=10, checkpoint_every=2, log_every=1, show_progress=False,
                  learning_rate=0.05, dataset_options=SYNTHETIC)
    values.update(overrides)
    return TrainConfig(**values)


def weights_of(train_dir):
    return load_trained_model(str(train_dir))[0].get_weights()


def test_two_replicas_update_the_weights_as_one_device_does(synthetic_root, tmp_path):
    initial = KVMMN(TINY).get_weights()  # seeded initialisers: the weights every run starts from
    results = {strategy: train(tiny_config(synthetic_root, tmp_path / strategy, strategy=strategy))
               for strategy in ("one_device", "mirrored")}
    assert results["one_device"]["step"] == results["mirrored"]["step"] == 1
    loss = results["one_device"]["metrics"]["loss"]
    assert np.isfinite(loss) and loss > 0
    assert results["mirrored"]["metrics"]["loss"] == pytest.approx(loss, abs=1e-5)
    single, mirrored = weights_of(tmp_path / "one_device"), weights_of(tmp_path / "mirrored")
    assert any(not np.allclose(a, b) for a, b in zip(single, initial))  # the step moved the weights
    for a, b in zip(single, mirrored):
        np.testing.assert_allclose(a, b, atol=1e-5)


def test_killed_run_resumes_with_the_same_step_optimizer_and_sampler_state(synthetic_root, tmp_path):
    common = dict(max_steps=5, checkpoint_every=2, refresh_every=2, random_erasing=True, random_rotation=True)
    full = train(tiny_config(synthetic_root, tmp_path / "full", **common))

    def kill_at(step, metrics):
        if step == 3:
            raise KeyboardInterrupt  # no checkpoint after step 2

    killed = tiny_config(synthetic_root, tmp_path / "killed", **common)
    with pytest.raises(KeyboardInterrupt):
        train(killed, hooks=[kill_at])
    assert tf.train.latest_checkpoint(killed.train_dir).endswith("ckpt-2")
    resumed = train(killed)
    assert resumed["step"] == full["step"] == 5
    for a, b in zip(weights_of(tmp_path / "full"), weights_of(tmp_path / "killed")):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    assert resumed["metrics"]["loss"] == pytest.approx(full["metrics"]["loss"], rel=1e-4)

    # the optimizer (iterations, momentum slots) and the step counter continue where the full run was
    full_reader, killed_reader = (tf.train.load_checkpoint(str(tmp_path / d)) for d in ("full", "killed"))
    keys = [k for k in full_reader.get_variable_to_shape_map() if k.startswith(("optimizer/", "step/"))]
    assert any("_iterations" in k for k in keys) and len(keys) > 3
    for key in keys:
        np.testing.assert_allclose(killed_reader.get_tensor(key), full_reader.get_tensor(key), rtol=1e-5, atol=1e-6)
    assert int(killed_reader.get_tensor("optimizer/_iterations/.ATTRIBUTES/VARIABLE_VALUE")) == 5
    sampler_full = ArrayState()
    sampler_killed = ArrayState()
    for state, directory in ((sampler_full, "full"), (sampler_killed, "killed")):
        tf.train.Checkpoint(sampler=state).restore(tf.train.latest_checkpoint(str(tmp_path / directory))) \
            .expect_partial()
    assert int(sampler_killed["version"]) == int(sampler_full["version"]) == 2
    np.testing.assert_array_equal(sampler_killed["neighbors"], sampler_full["neighbors"])


def test_eval_every_ranks_held_out_training_identities_into_tensorboard(synthetic_root, tmp_path, monkeypatch):
    from engine import summaries, validation
    from kvmmn import training

    sampled = []

    def recording_sampler(pids, *args, **kwargs):
        sampled.append(set(pids))
        return SetwiseSampler(pids, *args, **kwargs)

    monkeypatch.setattr(training, "SetwiseSampler", recording_sampler)
    config = tiny_config(synthetic_root, tmp_path / "val", max_steps=2, eval_every=1, mining="rand")
    train(config)
    train_samples, held_out = validation.split_samples(config.load_record().train, config.seed)
    assert held_out and sampled == [{s.pid for s in train_samples}]  # the held-out identities are not trained on
    scalars = summaries.read_scalars(str(tmp_path / "val" / "train"))
    for name in ("val/mAP", "val/rank1", "val/mINP", "val/pooled_l2_mAP", "val/pooled_l2_rank1"):
        assert [step for step, _ in scalars[name]] == [1, 2], name
        assert all(0.0 <= value <= 1.0 for _, value in scalars[name])
    assert all(value > 0 for _, value in scalars["val/mAP"])  # every query has a match in the gallery


def test_bad_input_gives_clear_errors(synthetic_root, tmp_path):
    with pytest.raises(DatasetError, match="unknown dataset 'market'"):
        train(tiny_config(synthetic_root, tmp_path / "a", dataset="market", dataset_options={}))
    empty = tmp_path / "empty_market"
    for folder in ("bounding_box_train", "query", "bounding_box_test"):
        (empty / folder).mkdir(parents=True)
    shutil.copy(os.path.join(synthetic_root, "query", sorted(os.listdir(os.path.join(synthetic_root, "query")))[0]),
                empty / "query" / "0001_c1s1_000001_00.jpg")
    with pytest.raises(DatasetError, match="no train images"):
        train(tiny_config(str(empty), tmp_path / "b", dataset="market1501", dataset_options={}))
    with pytest.raises(ValueError, match="Inception V1 checkpoint"):
        tiny_config(synthetic_root, tmp_path / "d", pretrained="inception_v1.ckpt")
    with pytest.raises(ValueError, match="batch_size=4 combinations do not split evenly over 3"):
        check_replicas(tiny_config(synthetic_root, tmp_path / "e"), 3)
    with pytest.raises(DatasetError, match="pass --split"):
        train(tiny_config(synthetic_root, tmp_path / "c", dataset="cuhk01", dataset_options={}))

    first = tiny_config(synthetic_root, tmp_path / "run", max_steps=1)
    train(first)
    with pytest.raises(ConfigMismatchError, match="feature_dim"):
        train(dataclasses.replace(first, model=dataclasses.replace(TINY, feature_dim=8)))
    with pytest.raises(ConfigMismatchError, match="gallery_size"):
        train(dataclasses.replace(first, gallery_size=3, max_steps=2))
    # a forged kvmmn_config.json (d = 8) beside a checkpoint of d = 16: the restore itself refuses
    other = dataclasses.replace(first, model=dataclasses.replace(TINY, feature_dim=8), max_steps=2)
    with open(tmp_path / "run" / "kvmmn_config.json", "w") as f:
        json.dump({"version": 1, "config": other.to_dict()}, f)
    with pytest.raises(RestoreError, match="does not match"):
        train(other)
    os.remove(tmp_path / "run" / "kvmmn_config.json")
    with pytest.raises(ConfigMismatchError, match="not a kvmmn-train run"):
        train(first)
    with pytest.raises(ConfigMismatchError, match="kvmmn_config.json not found"):
        load_trained_model(str(tmp_path / "run"))


def test_pretrained_slim_checkpoint_is_the_starting_backbone(synthetic_root, tmp_path, shared_fixtures):
    from kvmmn.slim_checkpoint import slim_variable_map

    checkpoint = os.path.join(shared_fixtures, "slim_inception_v1", "inception_v1_random.ckpt")
    model = dataclasses.replace(TINY, backbone="inception_v1")
    config = tiny_config(synthetic_root, tmp_path / "inception", model=model, pretrained=checkpoint, batch_size=2,
                         gallery_size=3, learning_rate=1e-9, weight_decay=0.0)
    assert train(config)["step"] == 1
    trained = load_trained_model(config.train_dir)[0]
    reader = tf.train.load_checkpoint(checkpoint)
    weights = {name: v for name, v in slim_variable_map(trained.backbone).items() if "moving" not in name}
    assert len(weights) >= 90  # 45 convolutions to Mixed_4f: weights and batch-norm beta
    for name, variable in weights.items():
        np.testing.assert_allclose(variable.numpy(), reader.get_tensor(name), atol=1e-6, err_msg=name)


def test_train_binary_reads_a_flagfile(synthetic_root, tmp_path):
    train_dir = tmp_path / "cli"
    options = "".join(f"--dataset_option={name}={value}\n" for name, value in SYNTHETIC.items())
    flagfile = tmp_path / "train.flags"
    flagfile.write_text(f"--data_root={synthetic_root}\n--train_dir={train_dir}\n--backbone=tiny\n--image_size=64,32\n"
                        "--feature_dim=8\n--num_heads=2\n--key_dim=4\n--value_dim=4\n--score_hidden_units=8\n"
                        "--noposition_embedding\n--gallery_size=3\n--batch_size=2\n"
                        "--mining=rand\n--num_samples=0\n--max_steps=1\n--loss=pair\n" + options)
    repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    done = subprocess.run([sys.executable, "-m", "kvmmn.cli.train", f"--flagfile={flagfile}"], cwd=repo,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    config = json.loads((train_dir / "kvmmn_config.json").read_text())["config"]
    assert config["loss"] == "pair" and config["model"]["feature_dim"] == 8
    assert config["model"]["position_embedding"] is False and config["dataset_options"]["num_identities"] == 16
    assert tf.train.latest_checkpoint(str(train_dir)).endswith("ckpt-1")
