"""Your own crops end to end without labels: features for a folder of images (absolute paths, no labels), search
with re-ranking that writes per query the top-k gallery images as JSON and CSV, and those files as pictures."""
import dataclasses
import json
import os

import cv2
import numpy as np
import pytest

from data.image_lists import image_record
from features import feature_file
from features.extraction import extract
from features.head import ModelConfig, build_baseline, feature_extractor


def _crop(path, colour):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    image = np.full((48, 24, 3), colour, np.uint8)
    image[::6] = 255 - image[::6]  # some texture, so the embeddings differ beyond the mean colour
    cv2.imwrite(str(path), image)


@pytest.fixture(scope="module")
def crops(tmp_path_factory):
    """Two query crops and a gallery folder of ten, in colour families; and the features of them, extracted by a
    tiny untrained baseline from inside another folder with relative paths, as a user types them."""
    root = tmp_path_factory.mktemp("crops")
    rng = np.random.default_rng(0)
    for i in range(10):
        _crop(root / "gallery" / f"crop_{i:02d}.jpg", rng.integers(0, 255, 3).tolist())
    _crop(root / "query" / "me.png", (30, 60, 200))
    _crop(root / "query" / "you.jpg", (200, 60, 30))
    config = ModelConfig(num_classes=3, image_size=(64, 32), blocks=(1, 1, 1, 1))
    model = build_baseline(config)
    (root / "work").mkdir()
    previous = os.getcwd()
    os.chdir(root / "work")
    try:
        record = image_record(query="../query", gallery="../gallery")
        # the gallery as a dataset reader given a relative --data_root lists it: relative to the working folder
        record = dataclasses.replace(record, gallery=tuple(s._replace(path=os.path.relpath(s.path))
                                                           for s in record.gallery))
        output = extract(model, config, record, "features.npz", batch_size=4, chunk_size=5, show_progress=False)
    finally:
        os.chdir(previous)
    return root, str(root / "work" / output), model


def test_features_of_a_folder_have_no_labels_and_absolute_paths(crops):
    root, path, model = crops
    features = feature_file.load_features(path)
    assert len(features.query) == 2 and len(features.gallery) == 10 and len(features.train) == 0
    assert not features.labelled and (features.pid == feature_file.NO_LABEL).all()
    assert (features.camid == feature_file.NO_LABEL).all() and features.dataset == ""
    assert list(features.query.path) == [str(root / "query" / "me.png"), str(root / "query" / "you.jpg")]
    assert all(os.path.isabs(p) and os.path.isfile(p) for p in features.path)
    # the stored embedding is the model's for that image
    from data.pipeline import load_image
    direct = feature_extractor(model)(load_image(features.gallery.path[3], (64, 32), "imagenet")[None],
                                      training=False)
    np.testing.assert_allclose(features.gallery.embedding[3], direct["embedding"][0], rtol=1e-4, atol=1e-4)
