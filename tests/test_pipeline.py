"""The tf.data pipeline and the papers' augmentation: shapes, normalisation ranges, seeded determinism, rotation
angles, random-erasing statistics (Zhong et al. 2017) and errors that name unreadable files."""
import math
import os

import cv2
import numpy as np
import pytest
import tensorflow as tf

from data import augment, pipeline
from data.record import DatasetError, Sample

SIZE = (32, 16)


@pytest.fixture(scope="module")
def samples(tmp_path_factory):
    folder = tmp_path_factory.mktemp("images")
    rng = np.random.default_rng(0)
    result = []
    for i in range(5):
        path = str(folder / f"{i:04d}_c{i % 2 + 1}s1_000001_01.{'png' if i == 4 else 'jpg'}")
        cv2.imwrite(path, rng.integers(0, 256, (40 + i, 20, 3), dtype=np.uint8))
        result.append(Sample(path, i + 10, i % 2))
    return result


def _batches(dataset):
    return [tuple(t.numpy() for t in batch) for batch in dataset]


def test_batches_shapes_and_labels(samples):
    batches = _batches(pipeline.make_dataset(samples, image_size=SIZE, batch_size=3))
    assert [b[0].shape for b in batches] == [(3, *SIZE, 3), (2, *SIZE, 3)]
    assert batches[0][0].dtype == np.float32 and batches[0][1].dtype == np.int32
    assert np.concatenate([b[1] for b in batches]).tolist() == [10, 11, 12, 13, 14]
    assert np.concatenate([b[2] for b in batches]).tolist() == [0, 1, 0, 1, 0]
    training = _batches(pipeline.make_dataset(samples, image_size=SIZE, batch_size=3, training=True))
    assert [b[0].shape[0] for b in training] == [3]  # fixed batch size for tf.distribute


def test_presets_and_load_image_match_the_dataset(samples):
    assert pipeline.PRESETS == {"kvmmn": ((224, 112), "inception"), "resnet": ((256, 128), "imagenet")}
    for size, normalization in pipeline.PRESETS.values():
        image = pipeline.load_image(samples[0].path, size, normalization)
        assert image.shape == (*size, 3)
    batch = _batches(pipeline.make_dataset(samples[:2], image_size=SIZE, normalization="imagenet"))[0][0]
    np.testing.assert_allclose(batch[1], pipeline.load_image(samples[1].path, SIZE, "imagenet"), atol=1e-5)


def test_normalisation_ranges(tmp_path):
    path = str(tmp_path / "half.png")
    image = np.zeros((8, 4, 3), np.uint8)
    image[:, 2:] = 255
    cv2.imwrite(path, image)
    inception = pipeline.load_image(path, (8, 4), "inception").numpy()
    np.testing.assert_allclose(inception[:, :2], -1.0, atol=1e-6)
    np.testing.assert_allclose(inception[:, 2:], 1.0, atol=1e-6)
    imagenet = pipeline.load_image(path, (8, 4), "imagenet").numpy()
    mean, std = np.array(pipeline.IMAGENET_MEAN), np.array(pipeline.IMAGENET_STD)
    np.testing.assert_allclose(imagenet[0, 0], -mean / std, atol=1e-5)
    np.testing.assert_allclose(imagenet[0, 3], (1 - mean) / std, atol=1e-5)
    with pytest.raises(ValueError, match="normalization"):
        pipeline.make_dataset([Sample(path, 1, 0)], normalization="caffe")


def test_augmented_pipeline_is_seeded(samples):
    def run(seed):
        dataset = pipeline.make_dataset(samples, image_size=SIZE, batch_size=5, shuffle=True, repeat=True,
                                        seed=seed, flip=True, random_rotation=True, random_erasing=True)
        return _batches(dataset.take(2))

    first, again, other = run(7), run(7), run(8)
    for a, b in zip(first, again):
        for x, y in zip(a, b):
            np.testing.assert_array_equal(x, y)
    assert not np.array_equal(first[0][0], other[0][0])
    assert not np.array_equal(first[0][0], first[1][0])  # each epoch augments and shuffles anew
    assert sorted(first[0][1].tolist()) == [10, 11, 12, 13, 14]
    assert np.all(np.abs(first[0][0]) <= 1.0 + 1e-6)


def test_rotation_angles_cover_plus_minus_pi_over_16():
    angles = augment.rotation_angles(tf.constant([3, 4], tf.int64), 4000).numpy()
    bound = math.pi / 16
    assert np.all(np.abs(angles) <= bound)
    assert angles.min() < -0.95 * bound and angles.max() > 0.95 * bound
    assert abs(angles.mean()) < 0.05 * bound and abs(np.std(angles) - bound / math.sqrt(3)) < 0.05 * bound


def test_rotate_turns_a_vertical_line_by_the_angle():
    image = np.zeros((1, 65, 65, 1), np.float32)
    image[0, :, 32] = 255.0
    angle = 0.15
    rotated = augment.rotate(image, [angle], fill_mode="constant").numpy()[0, :, :, 0]
    # Counter-clockwise as displayed: the top of the line moves left by dy * tan(angle).
    top_column = np.average(np.arange(65), weights=rotated[12])
    assert top_column == pytest.approx(32 - 20 * math.tan(angle), abs=0.3)
    seed = tf.constant([1, 2], tf.int64)
    images = tf.random.uniform([3, 16, 8, 3], 0, 255, seed=0)
    np.testing.assert_allclose(augment.random_rotation(images, seed),
                               augment.rotate(images, augment.rotation_angles(seed, 3)), atol=1e-4)


def test_erasing_boxes_follow_zhong_et_al():
    height, width, count = 224, 112, 4000
    apply, top, left, box_h, box_w = (t.numpy() for t in augment.erasing_boxes(
        tf.constant([5, 6], tf.int64), count, height, width))
    assert abs(apply.mean() - 0.5) < 0.03
    area = box_h * box_w / (height * width)
    aspect = box_h / box_w
    assert area.min() > 0.018 and area.max() < 0.41
    assert aspect.min() > 0.28 and aspect.max() < 3.5
    assert np.all((top >= 0) & (left >= 0) & (top + box_h <= height) & (left + box_w <= width))
    assert area.mean() == pytest.approx(0.21, abs=0.02)  # U(0.02, 0.4); hardly any draw fails to fit at 2:1


def test_random_erasing_wipes_exactly_the_box():
    images = tf.fill([200, 40, 20, 3], 100.0)
    seed = tf.constant([9, 9], tf.int64)
    erased = augment.random_erasing(images, seed).numpy()
    box_seed, _ = tf.unstack(tf.random.experimental.stateless_split(seed, 2))
    apply, top, left, box_h, box_w = (t.numpy() for t in augment.erasing_boxes(box_seed, 200, 40, 20))
    changed = (erased != 100.0).any(axis=3)
    expected = np.zeros_like(changed)
    for i in np.flatnonzero(apply):
        expected[i, top[i]: top[i] + box_h[i], left[i]: left[i] + box_w[i]] = True
    assert np.array_equal(changed, expected)
    values = erased[expected]
    assert values.min() >= 0 and values.max() <= 255 and abs(values.mean() - 127.5) < 5
    mean_fill = augment.random_erasing(images, seed, fill="mean").numpy()
    np.testing.assert_allclose(mean_fill[expected], np.broadcast_to(augment.IMAGENET_MEAN_PIXEL, values.shape),
                               atol=1e-4)


def test_flip_mirrors_about_half_of_the_images():
    images = tf.concat([tf.zeros([400, 4, 2, 1]), tf.fill([400, 4, 2, 1], 255.0)], axis=2)
    flipped = augment.random_flip(images, tf.constant([0, 1], tf.int64)).numpy()
    mirrored = flipped[:, 0, 0, 0] == 255
    assert np.array_equal(flipped[mirrored], images.numpy()[mirrored][:, :, ::-1])
    assert 0.4 < mirrored.mean() < 0.6


@pytest.mark.parametrize("content, message", [(b"", "cannot decode"), (b"not an image at all", "cannot decode"),
                                              ("truncated", r"corrupt JPEG \(Premature end of JPEG file\)")])
def test_unreadable_images_name_the_file(tmp_path, samples, content, message):
    path = str(tmp_path / "0001_c1s1_000001_01.jpg")
    if content == "truncated":
        whole = open(samples[0].path, "rb").read()
        content = whole[: len(whole) * 9 // 10]
    with open(path, "wb") as f:
        f.write(content)
    with pytest.raises(DatasetError, match=message) as error:
        pipeline.load_image(path, SIZE)
    assert path in str(error.value)
    dataset = pipeline.make_dataset([samples[1], Sample(path, 1, 0)], image_size=SIZE, batch_size=2)
    with pytest.raises(tf.errors.OpError, match=message) as error:
        _batches(dataset)
    assert path in str(error.value)


def test_strict_decoding_gives_opencvs_pixels(tmp_path, samples):
    """Strict decoding of a sound JPEG (simplejpeg) and the lenient one (OpenCV) give the same pixels, for colour,
    4:4:4, progressive and grey JPEGs, so the opt-out changes only what happens to damaged files."""
    image = cv2.GaussianBlur(np.random.default_rng(1).integers(0, 256, (67, 35, 3), dtype=np.uint8), (5, 5), 0)
    variants = {"420": (image, []), "444": (image, [cv2.IMWRITE_JPEG_SAMPLING_FACTOR,
                                                     cv2.IMWRITE_JPEG_SAMPLING_FACTOR_444]),
                "progressive": (image, [cv2.IMWRITE_JPEG_PROGRESSIVE, 1]), "grey": (image[:, :, 0], [])}
    for name, (pixels, params) in variants.items():
        path = str(tmp_path / f"{name}.jpg")
        assert cv2.imwrite(path, pixels, [cv2.IMWRITE_JPEG_QUALITY, 90] + params)
        strict, lenient = pipeline.read_image(path), pipeline.read_image(path, strict=False)
        assert strict.shape == (67, 35, 3) and strict.dtype == np.uint8
        assert np.array_equal(strict, lenient), name
    png = samples[4].path  # not a JPEG: OpenCV either way
    assert np.array_equal(pipeline.read_image(png), pipeline.read_image(png, strict=False))


def test_missing_image_names_the_file(tmp_path):
    path = str(tmp_path / "gone.jpg")
    with pytest.raises(DatasetError, match="cannot read image") as error:
        pipeline.load_image(path)
    assert path in str(error.value)
    with pytest.raises(tf.errors.OpError, match=os.path.basename(path)):
        _batches(pipeline.make_dataset([Sample(path, 1, 0)], image_size=SIZE))
