"""The features package's baseline (ResNet-50 with last stride 1, BNNeck, losses, P x K sampler, ImageNet weight
loading) and the acp-baseline-train -> acp-extract chain on a tiny synthetic dataset."""
import dataclasses

import h5py
import keras
import numpy as np
import pytest
import tensorflow as tf

from data import datasets, pipeline
from features import feature_file
from features import training as baseline_training
from features.backbone import ImageNetToCaffe, load_pretrained, resnet_v1
from features.head import ModelConfig, build_baseline, feature_extractor
from features.losses import batch_hard_triplet_loss, label_smoothing_cross_entropy
from features.recipe import Recipe
from features.sampler import PKSampler

TINY = (1, 1, 1, 1)


SYNTHETIC = dict(num_identities=12, num_cameras=3, min_cameras=2, min_images_per_camera=2, max_images_per_camera=3,
                 num_distractors=2, num_junk=1, height=64, width=32)


@pytest.fixture(scope="module")
def tiny_root(tmp_path_factory):
    """A tiny synthetic dataset generated once (the binaries then read it with the default parameters' reader)."""
    root = str(tmp_path_factory.mktemp("synthetic") / "data")
    datasets.load("synthetic", root, progress=False, **SYNTHETIC)
    return root


def weighted_layers(model):
    return {layer.name: [tuple(w.shape) for w in layer.weights] for layer in model.layers if layer.weights}


def test_resnet50_matches_keras_applications_and_last_stride_keeps_c4_resolution():
    ours = resnet_v1((256, 128, 3), last_stride=1)
    reference = keras.applications.ResNet50(include_top=False, weights=None, input_shape=(256, 128, 3))
    # same layer names and weight shapes: keras.applications' ImageNet weight files load by name
    assert weighted_layers(ours) == weighted_layers(reference)
    assert ours.count_params() == reference.count_params()
    c3, c4, c5 = (tuple(o.shape[1:]) for o in ours.outputs)
    assert (c3, c4, c5) == ((32, 16, 512), (16, 8, 1024), (16, 8, 2048))
    assert tuple(reference.output.shape[1:]) == (8, 4, 2048)  # ImageNet ResNet: last stride 2
    strided = resnet_v1((256, 128, 3), blocks=TINY, last_stride=2)
    assert tuple(strided.outputs[2].shape[1:]) == (8, 4, 2048)


def test_model_outputs_and_bnneck():
    model = build_baseline(ModelConfig(num_classes=5, image_size=(64, 32), blocks=TINY))
    out = model(tf.random.normal((2, 64, 32, 3)), training=False)
    assert {k: tuple(v.shape) for k, v in out.items()} == {
        "logits": (2, 5), "embedding": (2, 2048), "f3": (2, 512), "f4": (2, 1024), "f5": (2, 2048)}
    bnneck = model.get_layer("bnneck")
    assert not bnneck.center  # BoT's BNNeck has no (trainable) shift
    expected = (out["f5"] - bnneck.moving_mean) / np.sqrt(bnneck.moving_variance + bnneck.epsilon) * bnneck.gamma
    np.testing.assert_allclose(out["embedding"], expected, rtol=1e-5, atol=1e-5)
    assert model.get_layer("classifier").use_bias is False
    extractor = feature_extractor(model)
    assert sorted(extractor.output) == ["embedding", "f3", "f4", "f5"]


def test_imagenet_to_caffe_conversion():
    pixels = np.array([[[[10.0, 120.0, 250.0]]]], np.float32)  # RGB in [0, 255]
    normalised = (pixels / 255.0 - np.array(pipeline.IMAGENET_MEAN)) / np.array(pipeline.IMAGENET_STD)
    caffe = ImageNetToCaffe()(normalised.astype(np.float32))
    np.testing.assert_allclose(caffe[0, 0, 0], [250 - 103.939, 120 - 116.779, 10 - 123.68], atol=1e-3)


def test_pretrained_weights_load_by_layer_name_from_both_keras_formats(tmp_path):
    source = resnet_v1((64, 32, 3), blocks=TINY)
    legacy = str(tmp_path / "imagenet_notop.h5")
    from keras.src.legacy.saving import legacy_h5_format  # writes the format of keras.applications' files
    with h5py.File(legacy, "w") as handle:
        legacy_h5_format.save_weights_to_hdf5_group(handle, source)
    modern = str(tmp_path / "imagenet.weights.h5")
    source.save_weights(modern)
    for path in (legacy, modern):
        target = resnet_v1((64, 32, 3), blocks=TINY)
        assert load_pretrained(target, path) == len(weighted_layers(source))
        for a, b in zip(source.get_weights(), target.get_weights()):
            np.testing.assert_array_equal(a, b)
    bigger = resnet_v1((64, 32, 3), blocks=(1, 2, 1, 1))
    with pytest.raises(ValueError, match="imagenet_notop.h5: has no weights for layer 'conv3_block2_1_conv'"):
        load_pretrained(bigger, legacy)
    with pytest.raises(FileNotFoundError, match="--pretrained=.*nothing.h5: file not found"):
        load_pretrained(bigger, str(tmp_path / "nothing.h5"))


def test_label_smoothing_cross_entropy_by_hand():
    logits = np.array([[2.0, 0.0, -1.0], [0.5, 0.5, 3.0]], np.float32)
    labels = np.array([0, 1])
    loss = label_smoothing_cross_entropy(labels, logits, epsilon=0.1).numpy()
    log_p = logits - np.log(np.exp(logits).sum(1, keepdims=True))
    q = np.full((2, 3), 0.1 / 3)
    q[0, 0] += 0.9
    q[1, 1] += 0.9
    np.testing.assert_allclose(loss, -(q * log_p).sum(1), rtol=1e-6)


def test_batch_hard_triplet_loss_by_hand():
    features_ = np.array([[0.0, 0.0], [3.0, 0.0], [1.0, 0.0], [0.0, 1.0]], np.float32)
    labels = np.array([0, 0, 1, 1])
    loss = batch_hard_triplet_loss(features_, labels, margin=0.3).numpy()
    # anchor 0: hardest positive d(0,1)=3, hardest negative min(d(0,2)=1, d(0,3)=1)=1 -> 3-1+0.3
    # anchor 1: d(1,0)=3; negatives d(1,2)=2, d(1,3)=sqrt(10) -> 3-2+0.3
    # anchor 2: positive d(2,3)=sqrt(2); negatives d(2,0)=1, d(2,1)=2 -> sqrt(2)-1+0.3
    # anchor 3: positive sqrt(2); negatives d(3,0)=1, d(3,1)=sqrt(10) -> sqrt(2)-1+0.3
    np.testing.assert_allclose(loss, [2.3, 1.3, np.sqrt(2) - 0.7, np.sqrt(2) - 0.7], rtol=1e-5)
    lonely = batch_hard_triplet_loss(features_, np.zeros(4, int), margin=0.3).numpy()
    np.testing.assert_array_equal(lonely, 0.0)  # no negatives, no loss


def test_pk_sampler():
    labels = np.repeat(np.arange(10), [5, 5, 5, 5, 5, 5, 5, 5, 5, 2])  # identity 9 has only 2 images
    sampler = PKSampler(labels, num_identities=3, num_instances=4, seed=1)
    assert sampler.steps_per_epoch == 3 and sampler.batch_size == 12
    seen = []
    for step in range(sampler.steps_per_epoch):
        batch = sampler.indices(step)
        runs = labels[batch].reshape(3, 4)
        assert (runs == runs[:, :1]).all() and len(set(runs[:, 0])) == 3  # P runs of K, distinct identities
        for run, pid in zip(batch.reshape(3, 4), runs[:, 0]):
            if pid != 9:
                assert len(set(run)) == 4  # without replacement when the identity has K images
            else:  # 2 images for K = 4: drawn with replacement, from that identity's images only
                assert set(run) <= set(np.flatnonzero(labels == 9))
        seen += list(runs[:, 0])
    assert len(set(seen)) == 9  # one epoch visits 9 distinct identities (10 // 3 * 3)
    np.testing.assert_array_equal(sampler.indices(5), PKSampler(labels, 3, 4, seed=1).indices(5))
    assert not np.array_equal(sampler.indices(0), sampler.indices(3))  # a new epoch, a new permutation
    with pytest.raises(ValueError, match="fewer than P=11"):
        PKSampler(labels, num_identities=11)


def test_training_batches_resume_exactly(tiny_root):
    record = datasets.load("synthetic", tiny_root, progress=False, **SYNTHETIC)
    sampler = PKSampler([s.pid for s in record.train], num_identities=2, num_instances=2, seed=5)
    make_data = baseline_training.make_train_data(record.train, sampler, (32, 16), seed=5, stop_step=4,
                                         recipe=Recipe())
    uninterrupted = list(make_data(0))
    resumed = list(make_data(2))
    assert len(uninterrupted) == 4 and len(resumed) == 2
    for (images_a, labels_a, _), (images_b, labels_b, _) in zip(uninterrupted[2:], resumed):
        np.testing.assert_array_equal(images_a, images_b)  # same images, same flips and erasing
        np.testing.assert_array_equal(labels_a, labels_b)
    images, labels, _ = uninterrupted[1]
    assert images.shape == (4, 32, 16, 3)
    np.testing.assert_array_equal(labels, [record.train[i].pid for i in sampler.indices(1)])


def test_schedule_warms_up_then_decays():
    schedule = Recipe(learning_rate=1.0, warmup_epochs=2, warmup_factor=0.1,
                               decay_epochs=(4, 6)).schedule(steps_per_epoch=10)
    values = [float(schedule(s)) for s in (0, 10, 20, 39, 41, 61)]
    np.testing.assert_allclose(values, [0.1, 0.55, 1.0, 1.0, 0.1, 0.01], rtol=1e-5)


def parse(fv, argv):
    from engine import cli

    cli.parse(fv, argv)


def test_train_extract_chain_on_synthetic_data(tiny_root, tmp_path):
    from features.cli import extract, train_baseline

    tiny_record = datasets.load("synthetic", tiny_root, progress=False, **SYNTHETIC)
    train_dir = tmp_path / "baseline"
    data = ["--dataset=synthetic", f"--data_root={tiny_root}", "--split="]
    try:
        parse(train_baseline.FLAGS, ["acp-baseline-train", *data, f"--train_dir={train_dir}", "--blocks=1,1,1,1",
               "--image_height=64", "--image_width=32", "--num_identities=4", "--num_instances=2",
               "--strategy=one_device", "--max_steps=3", "--checkpoint_every=3", "--log_every=1", "--epochs=1",
               "--warmup_epochs=0", "--decay_epochs=", "--learning_rate=3.5e-4", "--depth=50", "--last_stride=1",
               "--weight_decay=5e-4", "--label_smoothing=0.1", "--triplet_margin=0.3", "--flip",
               "--random_erasing", "--seed=0", "--mixed_precision=float32", "--noxla"])
        train_baseline.main([])
    finally:
        train_baseline.FLAGS.unparse_flags()
    assert tf.train.latest_checkpoint(str(train_dir)).endswith("ckpt-3")
    config = baseline_training.load_model_config(str(train_dir))
    assert config.num_classes == tiny_record.num_train_pids and config.blocks == TINY
    model, _, path = baseline_training.restore_model(str(train_dir))
    reader = tf.train.load_checkpoint(path)
    assert int(reader.get_tensor("step/.ATTRIBUTES/VARIABLE_VALUE")) == 3

    output = tmp_path / "features" / "synthetic.npz"
    try:
        parse(extract.FLAGS, ["acp-extract", *data, f"--checkpoint={train_dir}", f"--output={output}", "--chunk_size=16",
               "--batch_size=8", "--subsets=train,query,gallery", "--nooverwrite"])
        extract.main([])
    finally:
        extract.FLAGS.unparse_flags()
    loaded = feature_file.load_features(str(output))
    assert len(loaded.train) == len(tiny_record.train) and len(loaded.query) == len(tiny_record.query)
    assert len(loaded.gallery) == len(tiny_record.gallery) and loaded.has_multi_block
    assert loaded.dataset == "synthetic" and loaded.source.endswith("ckpt-3")
    # the reader's facts travel with the rows (rerank.runner evaluates under the recorded protocol)
    assert (loaded.protocol, loaded.dataset_split) == (tiny_record.protocol, tiny_record.split or "") \
        and loaded.protocol == "market1501"
    assert list(loaded.query.path) == [s.path for s in tiny_record.query]
    np.testing.assert_array_equal(loaded.gallery.pid, [s.pid for s in tiny_record.gallery])
    # the stored features are the restored model's outputs for the pipeline's images
    from data.pipeline import load_image
    first = load_image(tiny_record.query[0].path, (64, 32), "imagenet")[None]
    direct = feature_extractor(model)(first, training=False)
    for name in ("embedding", "f3", "f4", "f5"):
        np.testing.assert_allclose(getattr(loaded.query, name)[0], direct[name][0], rtol=1e-4, atol=1e-4)


def test_restore_refuses_a_checkpoint_of_another_configuration(tmp_path):
    config = ModelConfig(num_classes=3, image_size=(64, 32), blocks=TINY)
    model = build_baseline(config)
    tf.train.Checkpoint(model=model).save(str(tmp_path / "ckpt"))
    baseline_training.save_model_config(dataclasses.replace(config, num_classes=4), str(tmp_path))
    with pytest.raises(ValueError, match="does not fit the model of"):
        baseline_training.restore_model(str(tmp_path))
    with pytest.raises(ValueError, match="holds another model configuration"):
        baseline_training.save_model_config(config, str(tmp_path))




def test_eval_every_holds_out_identities_and_writes_validation_scalars(tiny_root, tmp_path):
    from engine import distribute, summaries, validation
    from engine.train_loop import LoopConfig

    record = datasets.load("synthetic", tiny_root, progress=False, **SYNTHETIC)
    recipe = Recipe(num_identities=4, num_instances=2, epochs=1, warmup_epochs=0, decay_epochs=(),
                             eval_every=1)
    config = ModelConfig(num_classes=record.num_train_pids, image_size=(64, 32), blocks=TINY)
    loop = LoopConfig(str(tmp_path / "bl"), 2, checkpoint_every=2, log_every=1, show_progress=False)
    baseline_training.train(record, config, recipe, loop, distribute.make_strategy("one_device"), seed=0)
    train_samples, held_out = validation.split_samples(record.train, 0)
    # the classifier has one class per identity trained on; the held-out ones are not among them
    num_classes = baseline_training.load_model_config(str(tmp_path / "bl")).num_classes
    assert num_classes == len({s.pid for s in train_samples}) \
        == record.num_train_pids - validation.num_held_out(record.num_train_pids)
    scalars = summaries.read_scalars(str(tmp_path / "bl" / "train"))
    for name in ("val/mAP", "val/rank1", "val/mINP"):
        assert [step for step, _ in scalars[name]] == [1, 2] and all(0 < v <= 1 for _, v in scalars[name]), name
