"""Nothing deleted or overwritten that the project did not create (issue 21 item 1): folders carry a marker naming
the tool that made them (`engine.run_dir`), output paths are checked before any work, and exports are new version
folders written completely before they appear."""
import os

import numpy as np
import pytest

from engine import run_dir


def listing(folder):
    return sorted(os.path.relpath(os.path.join(d, f), folder) for d, _, files in os.walk(folder) for f in files)


@pytest.fixture
def user_folder(tmp_path):
    """A user's folder with a file in it (a dataset, notes...)."""
    folder = tmp_path / "mine"
    folder.mkdir()
    (folder / "notes.txt").write_text("keep me")
    return str(folder)


def test_claim_accepts_new_empty_and_own_folders_and_refuses_the_rest(tmp_path, user_folder):
    new = str(tmp_path / "new" / "run")
    assert run_dir.claim(new, "acp-train") == new and run_dir.owner(new) == "acp-train"
    run_dir.claim(new, "acp-train")  # again: its own
    with pytest.raises(run_dir.OwnershipError, match=r"run is a folder of acp-train, not of kvmmn-train"):
        run_dir.claim(new, "kvmmn-train")
    with pytest.raises(run_dir.OwnershipError, match=r"mine is a non-empty folder that acp-train did not create"
                                                     r".*notes.txt"):
        run_dir.claim(user_folder, "acp-train")
    (tmp_path / "file").write_text("x")
    with pytest.raises(run_dir.OwnershipError, match="is a file"):
        run_dir.claim(str(tmp_path / "file"), "acp-train")
    legacy = tmp_path / "legacy"  # a run from before the markers: its own configuration file proves it
    legacy.mkdir()
    (legacy / "acp_config.json").write_text("{}")
    run_dir.claim(str(legacy), "acp-train", signature="acp_config.json")
    assert run_dir.owner(str(legacy)) == "acp-train"
    with pytest.raises(run_dir.OwnershipError, match="not created by acp-extract"):
        run_dir.remove_owned(user_folder, "acp-extract")
    assert listing(user_folder) == ["notes.txt"]
    assert run_dir.remove_owned(new, "acp-train") and not os.path.exists(new)
    with pytest.raises(run_dir.OwnershipError, match="is a folder"):
        run_dir.check_output_file(user_folder, "--output")
    with pytest.raises(run_dir.OwnershipError, match="is a file, not a folder"):
        run_dir.check_output_file(str(tmp_path / "file" / "out.npz"), "--output")


def test_acp_train_refuses_another_tools_training_folder_before_writing(tmp_path, user_folder):
    from acp import model as acp_model
    from acp import training
    from engine.train_loop import LoopConfig
    from features.feature_file import FeatureSet

    kvmmn_dir = tmp_path / "kvmmn_run"
    run_dir.claim(str(kvmmn_dir), "kvmmn-train")
    (kvmmn_dir / "kvmmn_config.json").write_text("{}")
    pids = np.repeat(np.arange(4), 3)
    features = FeatureSet(embedding=np.eye(12, dtype=np.float32), pid=pids, camid=np.arange(12) % 2,
                          split=np.zeros(12, np.int8), origin="test")
    for folder in (str(kvmmn_dir), user_folder):
        before = listing(folder)
        with pytest.raises(run_dir.OwnershipError, match="kvmmn-train, not of acp-train|did not create"):
            training.train(features, LoopConfig(folder, 1, show_progress=False), "basic",
                           acp_model.make_config("basic", use_fusion=False, num_layers=1))
        assert listing(folder) == before  # no acp_config.json, no sequence_pools.npz


def test_baseline_train_refuses_another_tools_training_folder_before_writing(tmp_path):
    from engine.train_loop import LoopConfig
    from features.head import ModelConfig
    from features.recipe import Recipe
    from features.training import train

    acp_dir = tmp_path / "acp_run"
    run_dir.claim(str(acp_dir), "acp-train")
    before = listing(str(acp_dir))
    with pytest.raises(run_dir.OwnershipError, match="acp_run is a folder of acp-train, not of acp-baseline-train"):
        train(None, ModelConfig(num_classes=2), Recipe(), LoopConfig(str(acp_dir), 1), None)
    assert listing(str(acp_dir)) == before  # no baseline_config.json


def test_kvmmn_train_refuses_a_users_folder_before_writing(user_folder):
    from kvmmn.training import TrainConfig, train

    with pytest.raises(run_dir.OwnershipError, match="did not create"):
        train(TrainConfig(user_folder, data_root=user_folder, max_steps=1))
    assert listing(user_folder) == ["notes.txt"]


def test_extract_never_touches_a_users_parts_folder_and_refuses_a_folder_as_output(tmp_path):
    from features import feature_file

    rows = [(f"image{i}.jpg", 0) for i in range(4)]
    computed = []

    def compute(chunk):
        computed.append(len(chunk))
        return feature_file.FeatureSet(embedding=np.ones((len(chunk), 2), np.float32), pid=[1] * len(chunk),
                                       camid=[0] * len(chunk), split=[0] * len(chunk))

    mine = tmp_path / "mine.npz.parts"  # the user's own folder, named as acp-extract names its chunks' folder
    mine.mkdir()
    (mine / "holiday.jpg").write_bytes(b"photo")
    for overwrite in (False, True):
        with pytest.raises(run_dir.OwnershipError, match=r"mine\.npz\.parts (is a non-empty folder that acp-extract "
                                                         r"did not create|was not created by acp-extract)"):
            feature_file.write_chunked(str(tmp_path / "mine.npz"), rows, compute, 2, {}, overwrite=overwrite)
    assert listing(str(mine)) == ["holiday.jpg"] and not (tmp_path / "mine.npz").exists()

    folder = tmp_path / "features"  # --output naming an existing folder: refused before any chunk is computed
    folder.mkdir()
    with pytest.raises(run_dir.OwnershipError, match="is a folder"):
        feature_file.write_chunked(str(folder), rows, compute, 2, {})
    assert computed == [] and os.listdir(folder) == [] and not (tmp_path / "features.parts").exists()

    output = str(tmp_path / "ours.npz")  # our own parts folder is resumed, overwritten and removed
    with pytest.raises(ZeroDivisionError):
        feature_file.write_chunked(output, rows, lambda chunk: compute(chunk) if computed else 1 / 0, 2, {})
    assert run_dir.owner(output + ".parts") == feature_file.PARTS_TOOL
    assert feature_file.write_chunked(output, rows, compute, 2, {}, overwrite=True) == output
    assert len(feature_file.load_features(output)) == 4 and not os.path.exists(output + ".parts")


def test_exports_are_new_complete_versions_and_never_go_into_a_users_folder(tmp_path, user_folder):
    from kvmmn.model import KVMMN, KVMMNConfig
    from kvmmn.serving import export_saved_model

    model = KVMMN(KVMMNConfig(backbone="tiny", image_size=(32, 16), feature_dim=8, num_heads=2, key_dim=4,
                              value_dim=4, score_hidden_units=8))
    with pytest.raises(run_dir.OwnershipError, match="did not create"):
        export_saved_model(model, user_folder)
    assert listing(user_folder) == ["notes.txt"]
    export_dir = tmp_path / "exports"
    run_dir.claim(str(export_dir), "kvmmn-export")  # an earlier export began here and was killed mid-write:
    killed = export_dir / f"1.tmp-{2 ** 22 + 7}"  # its temporary (its pid long gone)
    killed.mkdir(parents=True)
    (killed / "saved_model.pb").write_bytes(b"half")
    assert export_saved_model(model, str(export_dir)) == str(export_dir / "1")
    first = listing(str(export_dir / "1"))
    assert "saved_model.pb" in first and "metadata.json" in first and not killed.exists()
    assert export_saved_model(model, str(export_dir)) == str(export_dir / "2")  # never over version 1
    assert listing(str(export_dir / "1")) == first
    assert sorted(os.listdir(export_dir)) == [".reid-owned", "1", "2"]
