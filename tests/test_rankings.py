"""Ranking files (rerank.rankings): what acp-rerank --top_list writes and reid-visrank reads, in JSON, CSV and npz."""
import csv
import json
import os

import numpy as np
import pytest

from rerank import rankings

INDICES = [[2, 0, 1], [1, 2, -1]]  # query 1 has two items: a shorter list is padded
DISTANCES = [[0.1, 0.2, 0.3], [0.05, 0.5, 0.0]]
LABELS = dict(query_pid=[1, 2], query_camid=[0, 0], gallery_pid=[1, 2, 1], gallery_camid=[1, 1, 0])


def _ranking(labelled=True):
    return rankings.from_top(INDICES, DISTANCES, ["/q/a.png", "/q/b.png"], ["/g/0.png", "/g/1.png", "/g/2.png"],
                             **(LABELS if labelled else {}), meta={"method": "k_reciprocal"})


@pytest.mark.parametrize("extension", rankings.EXTENSIONS)
@pytest.mark.parametrize("labelled", [True, False])
def test_every_format_reads_back_what_was_written(tmp_path, extension, labelled):
    written = _ranking(labelled)
    path = rankings.write(str(tmp_path / f"top{extension}"), written)
    assert os.listdir(tmp_path) == [f"top{extension}"]  # atomic: no temporary left behind
    read = rankings.read(path)
    assert read.labelled == labelled and len(read) == 2
    for name in ("query", "query_path", "gallery", "gallery_path", "distance") + (rankings.LABELS if labelled else ()):
        np.testing.assert_array_equal(getattr(read, name), getattr(written, name), err_msg=name)
    np.testing.assert_array_equal(read.gallery, INDICES)
    assert list(read.gallery_path[0]) == ["/g/2.png", "/g/0.png", "/g/1.png"] and read.gallery_path[1, 2] == ""
    if labelled:  # query 0 is pid 1: gallery 2 and 0 are pid 1, gallery 1 is not
        np.testing.assert_array_equal(read.matches(), [[True, True, False], [True, False, False]])
    else:
        assert read.matches() is None and read.query_pid is None


def test_json_and_csv_say_per_item_whether_it_matches_only_when_labelled(tmp_path):
    document = json.loads(open(rankings.write(str(tmp_path / "l.json"), _ranking())).read())
    assert document["format"] == "reid-ranking" and document["meta"] == {"method": "k_reciprocal"}
    first = document["queries"][0]
    assert (first["query"], first["path"], first["pid"], first["camid"]) == (0, "/q/a.png", 1, 0)
    assert [(i["rank"], i["gallery"], i["path"], i["distance"], i["match"]) for i in first["ranking"]] == [
        (1, 2, "/g/2.png", 0.1, True), (2, 0, "/g/0.png", 0.2, True), (3, 1, "/g/1.png", 0.3, False)]
    assert len(document["queries"][1]["ranking"]) == 2  # padding is not written
    unlabelled = json.loads(open(rankings.write(str(tmp_path / "u.json"), _ranking(False))).read())
    assert not unlabelled["labelled"] and "match" not in unlabelled["queries"][0]["ranking"][0]

    with open(rankings.write(str(tmp_path / "l.csv"), _ranking())) as handle:
        lines = list(csv.DictReader(handle))
    assert len(lines) == 5 and [line["match"] for line in lines] == ["1", "1", "0", "1", "0"]
    assert lines[3] == dict(query="1", query_path="/q/b.png", rank="1", gallery="1", gallery_path="/g/1.png",
                            distance="0.05", query_pid="2", query_camid="0", gallery_pid="2", gallery_camid="1",
                            match="1")
    with open(rankings.write(str(tmp_path / "u.csv"), _ranking(False))) as handle:
        assert next(csv.reader(handle)) == list(rankings.CSV_COLUMNS)


def _csv(tmp_path, text):
    path = tmp_path / "r.csv"
    path.write_text("query,query_path,rank,gallery,gallery_path,distance\n" + text)
    return str(path)


def test_bad_files_are_errors_naming_file_and_place(tmp_path):
    with pytest.raises(rankings.RankingFileError, match=r"r.csv:3: rank 3, expected 2"):
        rankings.read(_csv(tmp_path, "0,/q,1,0,/g0,0.1\n0,/q,3,1,/g1,0.2\n"))
    with pytest.raises(rankings.RankingFileError, match=r"r.csv:2: 'gallery' must be an integer, got '1.5'"):
        rankings.read(_csv(tmp_path, "0,/q,1,1.5,/g0,0.1\n"))
    with pytest.raises(rankings.RankingFileError, match=r"r.csv:2: 'distance' must be a finite number, got 'nan'"):
        rankings.read(_csv(tmp_path, "0,/q,1,1,/g0,nan\n"))
    with pytest.raises(rankings.RankingFileError, match=r"r.csv:3: query 0 differs from its line 2"):
        rankings.read(_csv(tmp_path, "0,/q,1,0,/g0,0.1\n0,/other,2,1,/g1,0.2\n"))
    with pytest.raises(rankings.RankingFileError, match=r"r.csv: the distances of query 0 are not ascending"):
        rankings.read(_csv(tmp_path, "0,/q,1,0,/g0,0.3\n0,/q,2,1,/g1,0.2\n"))
    with pytest.raises(rankings.RankingFileError, match=r"r.csv:3: expected 6 fields, got 5"):
        rankings.read(_csv(tmp_path, "0,/q,1,0,/g0,0.3\n0,/q,2,1,/g1\n"))
    (tmp_path / "h.csv").write_text("path,pid,camid\n")
    with pytest.raises(rankings.RankingFileError, match=r"h.csv:1: expected the header query,query_path"):
        rankings.read(str(tmp_path / "h.csv"))

    good = json.loads(open(rankings.write(str(tmp_path / "g.json"), _ranking())).read())
    del good["queries"][1]["ranking"][1]["pid"]
    (tmp_path / "b.json").write_text(json.dumps(good))
    with pytest.raises(rankings.RankingFileError, match=r"b.json: queries\[1\].ranking\[1\]: needs rank, gallery, "
                                                        r"path, distance, pid, camid"):
        rankings.read(str(tmp_path / "b.json"))
    (tmp_path / "f.json").write_text(json.dumps({"format": "something else"}))
    with pytest.raises(rankings.RankingFileError, match=r"f.json: not a ranking file"):
        rankings.read(str(tmp_path / "f.json"))
    with pytest.raises(rankings.RankingFileError, match=r"missing.json: ranking file not found"):
        rankings.read(str(tmp_path / "missing.json"))
    with pytest.raises(rankings.RankingFileError, match=r"labels come as a group"):
        rankings.Ranking([0], ["/q"], [[0]], [["/g"]], [[0.1]], query_pid=[1])
    with pytest.raises(rankings.RankingFileError, match=r"a query number appears twice"):
        rankings.Ranking([0, 0], ["/q", "/q"], [[0], [0]], [["/g"], ["/g"]], [[0.1], [0.1]])
    with pytest.raises(rankings.RankingFileError, match=r"o.txt: a ranking file ends in .json, .csv, .npz"):
        rankings.write(str(tmp_path / "o.txt"), _ranking())
