"""Your own crops end to end without labels: features for a folder of images (absolute paths, no labels), search
with re-ranking that writes per query the top-k gallery images as JSON and CSV, and those files as pictures."""
import csv
import dataclasses
import json
import os

import cv2
import numpy as np
import pytest

from data.image_lists import image_record
from experiments.plots import ranked_lists
from features import feature_file
from features.extraction import extract
from features.head import ModelConfig, build_baseline, feature_extractor
from rerank import rankings
from rerank import runner


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


def test_search_mode_writes_each_querys_top_k_crops_as_json_and_csv(crops, tmp_path):
    root, path, _ = crops
    features = feature_file.load_features(path)
    outcome = runner.evaluate_method(features, "k_reciprocal", {"k1": 4, "k2": 2}, top_k=5)
    assert outcome["labelled"] is False and "mAP" not in outcome and "cmc" not in outcome  # nothing evaluated
    assert "search mode: no labels" in runner.format_outcome(outcome)
    distances, indices = outcome.pop("top")
    written = runner.write_top_list([str(tmp_path / "top.json"), str(tmp_path / "top.csv")], features, distances,
                                    indices, meta={"method": "k_reciprocal", "params": outcome["params"]})
    assert sorted(os.listdir(tmp_path)) == ["top.csv", "top.json"]  # atomic: no temporaries left
    document = json.loads(open(written[0]).read())
    assert document["labelled"] is False and document["meta"]["method"] == "k_reciprocal"
    assert document["meta"]["features"] == path
    assert [q["path"] for q in document["queries"]] == list(features.query.path)
    gallery = set(features.gallery.path)
    for query, row_distances, row_indices in zip(document["queries"], distances, indices):
        items = query["ranking"]
        assert [i["rank"] for i in items] == [1, 2, 3, 4, 5] and "pid" not in query
        assert all(os.path.isabs(i["path"]) and os.path.isfile(i["path"]) and i["path"] in gallery
                   and "match" not in i for i in items)
        assert [i["gallery"] for i in items] == list(row_indices)
        assert [i["path"] for i in items] == list(features.gallery.path[row_indices])
        np.testing.assert_allclose([i["distance"] for i in items], row_distances, rtol=1e-6)
        assert np.all(np.diff([i["distance"] for i in items]) >= 0)
    with open(written[1]) as handle:
        lines = list(csv.DictReader(handle))
    assert list(lines[0]) == list(rankings.CSV_COLUMNS) and len(lines) == 2 * 5
    assert [line["gallery_path"] for line in lines[5:]] == [i["path"] for i in document["queries"][1]["ranking"]]
    # N/C needs the gallery's identities: in search mode a derived neighbourhood must be given
    with pytest.raises(ValueError, match=r"k1 defaults to N/C.*no labels \(search mode\); give it"):
        runner.evaluate_method(features, "k_reciprocal", table_iv_neighbourhood=True)


def test_with_labels_each_item_says_whether_it_matches(crops, tmp_path):
    _, path, _ = crops
    unlabelled = feature_file.load_features(path)
    pids = np.concatenate([[0, 1], np.arange(10) % 3])  # queries pid 0 and 1, the gallery in three identities
    features = feature_file.FeatureSet(embedding=unlabelled.embedding, pid=pids, camid=np.r_[[0, 0], np.ones(10)],
                                       split=unlabelled.split, path=unlabelled.path)
    outcome = runner.evaluate_method(features, "none", top_k=4)
    assert outcome["labelled"] is True and 0 <= outcome["mAP"] <= 1
    distances, indices = outcome.pop("top")
    (written,) = runner.write_top_list([str(tmp_path / "top.json")], features, distances, indices)
    for query, row in zip(json.loads(open(written).read())["queries"], indices):
        assert [item["match"] for item in query["ranking"]] == list(pids[2:][row] == query["pid"])
    with pytest.raises(ValueError, match=r"top.txt: a --top_list file ends in .json, .csv, .npz"):
        runner.write_top_list([str(tmp_path / "ok.json"), str(tmp_path / "top.txt")], features, distances, indices)
    assert not (tmp_path / "ok.json").exists()  # every extension is checked before anything is written


def test_pictures_of_a_search_have_grey_frames_and_the_expected_size(crops, tmp_path):
    _, path, _ = crops
    features = feature_file.load_features(path)
    outcome = runner.evaluate_method(features, "none", top_k=3)
    (top,) = runner.write_top_list([str(tmp_path / "top.csv")], features, *outcome.pop("top"))
    written = ranked_lists.draw_top_lists([top], [], str(tmp_path / "pictures"), num_queries=5)
    assert [os.path.basename(p) for p in written] == ["query_00000.png", "query_00001.png"]
    canvas = cv2.imread(written[1])
    tile_h, tile_w = ranked_lists.TILE[0] + 2 * ranked_lists.FRAME, ranked_lists.TILE[1] + 2 * ranked_lists.FRAME
    assert canvas.shape == (2 * ranked_lists.MARGIN + 2 * ranked_lists.TEXT_HEIGHT + tile_h,
                            2 * ranked_lists.MARGIN + tile_w + ranked_lists.QUERY_GAP + 3 * tile_w
                            + 2 * ranked_lists.GAP, 3)
    y = ranked_lists.MARGIN + 2 * ranked_lists.TEXT_HEIGHT + 1
    for column in range(3):
        x = ranked_lists.MARGIN + tile_w + ranked_lists.QUERY_GAP + column * (tile_w + ranked_lists.GAP) + 1
        assert tuple(int(v) for v in canvas[y, x]) == ranked_lists.GREY


def test_extract_binary_takes_images_instead_of_a_dataset():
    from engine import cli
    from features.cli import extract as binary

    cli.parse(binary.FLAGS, ["acp-extract", "--checkpoint=runs/none", "--output=never.npz", "--query_images=q",
                             "--dataset=market1501"])
    try:
        with pytest.raises(cli.UserError, match="--query_images / --gallery_images replace the dataset flags; drop "
                                                "--dataset"):
            binary.main([])
    finally:
        binary.FLAGS.unparse_flags()
    assert not os.path.exists("never.npz")


def test_extraction_progress_counts_images_a_line_per_chunk(crops, tmp_path, capsys):
    """Feature extraction reports images done (12 rows in chunks of 5: 5, 10, 12), plain lines in a log."""
    root, _, model = crops
    record = image_record(query=str(root / "query"), gallery=str(root / "gallery"))
    extract(model, ModelConfig(num_classes=3, image_size=(64, 32), blocks=(1, 1, 1, 1)), record,
            str(tmp_path / "f.npz"), batch_size=4, chunk_size=5)
    lines = [line for line in capsys.readouterr().out.splitlines() if "images/s" in line]
    assert [line.split()[0] for line in lines] == ["5/12", "10/12", "12/12"], lines
