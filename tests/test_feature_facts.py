"""Facts travel with the data (issue 16 item 4): a feature file records its evaluation protocol, its dataset split
and multi-block features of any widths; re-ranking evaluates it under its own protocol (the readers' Record.protocol
is the one source of truth, no second table), and ACP runs on blocks of any widths."""
import numpy as np
import pytest

from acp import acp_rerank
from acp import model as acp_model
from features import feature_file
from features.feature_file import FeatureFileError, FeatureSet
from features.importers import import_arrays
from rerank import runner as rerank_runner
from rerank.evaluation import evaluate_features
from rerank.synthetic import clustered_embeddings

ODD_WIDTHS = {"f3": 3, "f4": 5, "f5": 7}


def rows(protocol="", dataset="market1501", dataset_split="", widths=None, seed=0):
    data = clustered_embeddings(90, dim=8, images_per_identity=6, noise=1.3, camera_spread=0.4, seed=seed)
    embedding = np.concatenate([data.query, data.gallery])
    rng = np.random.default_rng(seed)
    blocks = {name: rng.normal(size=(len(embedding), width)).astype(np.float32)
              for name, width in (widths or {}).items()}
    return FeatureSet(embedding=embedding, pid=np.concatenate([data.q_pids, data.g_pids]),
                      camid=np.concatenate([data.q_camids, data.g_camids]),
                      split=np.repeat([1, 2], [len(data.query), len(data.gallery)]), dataset=dataset,
                      dataset_split=dataset_split, protocol=protocol, **blocks)


def test_protocol_split_and_any_block_widths_round_trip(tmp_path):
    original = rows("single_shot", "cuhk03_labeled", "kvmmn/3", ODD_WIDTHS)
    loaded = feature_file.load_features(feature_file.save_features(str(tmp_path / "f.npz"), original))
    assert (loaded.protocol, loaded.dataset_split, loaded.dataset) == ("single_shot", "kvmmn/3", "cuhk03_labeled")
    assert loaded.block_widths == ODD_WIDTHS and [b.shape[1] for b in loaded.multi_block] == [3, 5, 7]
    assert loaded.query.protocol == "single_shot" and loaded.gallery.dataset_split == "kvmmn/3"  # subsets keep them
    assert "protocol single_shot" in loaded.summary() and "3/5/7" in loaded.summary()
    joined = feature_file.concatenate([loaded.query, loaded.gallery])
    assert joined.facts() == loaded.facts() and joined.block_widths == ODD_WIDTHS
    with pytest.raises(FeatureFileError, match="different multi-block features"):
        feature_file.concatenate([loaded, rows(widths={"f3": 3, "f4": 5, "f5": 8})])
    with pytest.raises(FeatureFileError, match="field 'protocol' is 'market'"):
        rows("market")


def test_version_1_files_are_read_without_facts(tmp_path):
    data = rows()
    path = tmp_path / "v1.npz"
    np.savez(path, version=np.int64(1), dataset="market1501", source="old", embedding=data.embedding, pid=data.pid,
             camid=data.camid, split=data.split)
    old = feature_file.load_features(str(path))
    assert old.protocol == "" and old.dataset_split == "" and old.dataset == "market1501" and len(old) == len(data)
    np.savez(path, version=np.int64(1), protocol="market1501", embedding=data.embedding, pid=data.pid,
             camid=data.camid, split=data.split)
    with pytest.raises(FeatureFileError, match=r"unknown fields \['protocol'\] \(format version 1"):
        feature_file.load_features(str(path))
    np.savez(path, version=np.int64(3), embedding=data.embedding, pid=data.pid, camid=data.camid, split=data.split)
    with pytest.raises(FeatureFileError, match=r"field 'version' is 3, but this code reads format versions \[1, 2\]"):
        feature_file.load_features(str(path))


def test_rerank_evaluates_under_the_protocol_the_file_records(tmp_path):
    expected = {}
    for protocol in ("market1501", "vehicleid"):
        data = rows(protocol)
        q, g = data.query, data.gallery
        expected[protocol] = evaluate_features(q.embedding, g.embedding, q.pid, g.pid, q.camid, g.camid,
                                               metric="cosine", protocol=protocol)["mAP"]
        outcome = rerank_runner.evaluate_method(data, "none")
        assert outcome["protocol"] == protocol and outcome["mAP"] == pytest.approx(expected[protocol])
        assert outcome["notes"] == []
    assert expected["vehicleid"] != pytest.approx(expected["market1501"])  # the protocols differ on this set
    # CUHK03's new protocol is market1501 (its reader says so): the dataset name no longer decides
    cuhk03_new = rerank_runner.evaluate_method(rows("market1501", "cuhk03_labeled", "new"), "none")
    assert cuhk03_new["protocol"] == "market1501" and cuhk03_new["dataset_split"] == "new"
    # none recorded: market1501, and the outcome says so; a given protocol wins over the file's
    unknown = rerank_runner.evaluate_method(rows("", "vehicleid"), "none")
    assert unknown["protocol"] == "market1501" and "records no evaluation protocol" in unknown["notes"][0]
    assert rerank_runner.evaluate_method(rows("market1501"), "none", protocol="vehicleid")["protocol"] == "vehicleid"


def test_importers_record_the_facts_given():
    data = rows()
    imported = import_arrays(data.query.embedding, data.query.pid, data.query.camid, data.gallery.embedding,
                             data.gallery.pid, data.gallery.camid, dataset="vehicleid", protocol="vehicleid",
                             dataset_split="800/0")
    assert imported.facts() == {"dataset": "vehicleid", "source": "import numpy arrays", "dataset_split": "800/0",
                                "protocol": "vehicleid"}


def test_acp_reranks_multi_block_features_of_any_widths():
    data = rows("market1501", widths=ODD_WIDTHS)
    tiny = dict(num_layers=1, memory_size=2, num_heads=2, memory_dim=4, model_dim=8, fusion_dropout=0.0,
                transformer_dropout=0.0, embedding_dim=8)
    model = acp_model.build_acp(acp_model.make_config("basic", **tiny, block_dims=tuple(ODD_WIDTHS.values())))
    result, k1 = acp_rerank.rerank_feature_sets(data.query, data.gallery, model, k2=2)
    assert result.shape == (len(data.query), len(data.gallery)) and np.isfinite(result.dense()).all()
    resnet = acp_model.build_acp(acp_model.make_config("basic", **tiny))  # ResNet-50's widths: does not fit
    with pytest.raises(ValueError, match="f3"):
        acp_rerank.rerank_feature_sets(data.query, data.gallery, resnet, k2=2)
