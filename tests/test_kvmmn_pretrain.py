"""kvmmn/pretrain.py: identity pre-training makes the backbone's pooled features rank held-out identities, and its
checkpoint is what `TrainConfig(pretrained=...)` starts KVM-MN's training from."""
import re

import numpy as np
import pytest
import tensorflow as tf

from data import datasets
from kvmmn.embedding import pooled_features
from kvmmn.model import KVMMN, KVMMNConfig
from kvmmn.pretrain import PretrainConfig, is_backbone_checkpoint, load_backbone, pretrain_backbone, save_backbone
from kvmmn.training import TrainConfig, build_model
from rerank.evaluation import evaluate_features

DATA = dict(num_identities=48, group_size=3, num_distractors=2, num_junk=1, height=64, width=32, progress=False)
MODEL = KVMMNConfig(backbone="tiny", image_size=(64, 32), feature_dim=16, num_heads=2, key_dim=4, value_dim=4,
                    position_embedding=False, score_hidden_units=8, seed=0)


def pooled_map(model, record) -> float:
    query, gallery = (pooled_features(model, subset) for subset in (record.query, record.gallery))
    return evaluate_features(query, gallery, [s.pid for s in record.query], [s.pid for s in record.gallery],
                             [s.camid for s in record.query], [s.camid for s in record.gallery],
                             protocol=record.protocol)["mAP"]


@pytest.fixture(scope="module")
def record(tmp_path_factory):
    return datasets.load("synthetic", str(tmp_path_factory.mktemp("pretrain") / "synthetic"), **DATA)


def test_pretraining_makes_pooled_features_rank_test_identities(record, tmp_path):
    model = KVMMN(MODEL)
    before = pooled_map(model, record)
    metrics = pretrain_backbone(model.backbone, record.train, PretrainConfig(steps=500))
    after = pooled_map(model, record)
    assert metrics["num_identities"] == record.num_train_pids
    assert metrics["accuracy"] > 0.5 and metrics["loss"] < 0.5 * np.log(record.num_train_pids), metrics
    print(f"pooled-L2 mAP before {before:.3f}, after {after:.3f}")
    assert after > before + 0.05, (before, after)

    prefix = save_backbone(model.backbone, str(tmp_path / "backbone"))
    assert is_backbone_checkpoint(prefix) and not is_backbone_checkpoint(str(tmp_path / "missing"))
    restored = build_model(TrainConfig(train_dir=str(tmp_path / "run"), model=MODEL, pretrained=prefix))
    for mine, theirs in zip(model.backbone.weights, restored.backbone.weights):
        np.testing.assert_array_equal(mine.numpy(), theirs.numpy())
    assert pooled_map(restored, record) == pytest.approx(after)


def test_not_a_backbone_checkpoint_is_refused(tmp_path):
    model = KVMMN(MODEL)
    with pytest.raises(ValueError, match="not a backbone checkpoint"):
        load_backbone(model.backbone, str(tmp_path / "missing"))
    slim_like = tf.train.Checkpoint(InceptionV1=tf.Variable(1.0)).write(str(tmp_path / "slim"))
    with pytest.raises(ValueError, match="not a kvmmn.pretrain backbone checkpoint"):
        TrainConfig(train_dir=str(tmp_path / "run"), model=MODEL, pretrained=slim_like)
    with pytest.raises(ValueError, match="steps=0 must be >= 1"):
        PretrainConfig(steps=0)


def test_pretraining_progress_in_a_log_is_a_line_per_tenth_with_a_rate(record, capsys):
    """Where stdout is a log, pre-training prints plain lines, one per tenth of the steps, with a measured rate."""
    pretrain_backbone(KVMMN(MODEL).backbone, record.train, PretrainConfig(steps=20, batch_size=4), progress=True)
    lines = [line for line in capsys.readouterr().out.splitlines() if line.startswith("step ")]
    assert [line.split()[1] for line in lines] == [f"{2 * i}/20" for i in range(1, 11)], lines
    assert all(float(re.search(r"([\d.]+) steps/s", line).group(1)) > 0 for line in lines), lines
