"""experiments/: table configurations, the row runner with its resumable CSV / Markdown results, and the figures."""
import csv
import io
import os
import contextlib

import numpy as np
import pytest

from acp import model as acp_model
from acp import params as acp_params
from engine import cli
from experiments import results, run, tables
from experiments.cli import run as run_binary
from experiments.context import Context
from experiments.runners import rerank as rerank_rows
from experiments.tables import acp as acp_tables
from experiments.tables import kvmmn as kvmmn_tables
from features import feature_file as feature_io
from rerank import runner as rerank_runner
from rerank.synthetic import clustered_embeddings

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
SYNTHETIC = dict(num_identities=24, num_distractors=4, num_junk=2)


@contextlib.contextmanager
def command_line(*args):
    """Flags parsed from `args` for the duration of the block (restored after), stdout captured."""
    with contextlib.redirect_stdout(io.StringIO()) as out:
        cli.parse(run_binary.FLAGS, ["reid-experiments", *args])
        yield out


def read_csv(path):
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


def smoke_context(tmp_path, **kwargs):
    return Context(scale="smoke", results_dir=str(tmp_path / "results"), verbose=0, **kwargs)


def assert_png(path):
    with open(path, "rb") as handle:
        assert handle.read(8) == PNG_MAGIC
    import matplotlib.image

    image = matplotlib.image.imread(path)
    assert image.ndim == 3 and image.shape[0] > 50 and image.shape[1] > 50
    assert image.std() > 0  # something was drawn


def write_feature_file(path, num_test=180, num_train=180, dim=32, seed=0):
    """A small feature file in the features.feature_file schema: clustered train / query / gallery embeddings and
    multi-block features f3/f4/f5 that are random projections of them."""
    rng = np.random.default_rng(seed)
    projections = [rng.standard_normal((dim, w)).astype(np.float32) / np.sqrt(dim) for w in (512, 1024, 2048)]
    parts = []
    for subset, count, offset in (("train", num_train, 1), ("test", num_test, 0)):
        data = clustered_embeddings(count, dim=dim, images_per_identity=6, noise=1.0, seed=seed + offset)
        embedding = np.concatenate([data.query, data.gallery])
        pid = np.concatenate([data.q_pids, data.g_pids])
        split = (np.zeros(len(embedding), np.int8) if subset == "train"
                 else np.r_[np.ones(len(data.query)), np.full(len(data.gallery), 2)].astype(np.int8))
        parts.append(feature_io.FeatureSet(
            embedding=embedding, pid=pid - 1 if subset == "train" else pid,
            camid=np.concatenate([data.q_camids, data.g_camids]), split=split, dataset="synthetic",
            **{name: embedding @ p for name, p in zip(("f3", "f4", "f5"), projections)}))
    feature_io.save_features(str(path), feature_io.concatenate(parts, dataset="synthetic", source="test"))
    return str(path)


# ------------------------------------------------------------------------------------------- configurations
def test_every_registered_table_is_well_formed():
    assert tables.names() == ("kvmmn_table1", "kvmmn_table3", "acp_table3", "acp_table5", "acp_table7",
                              "acp_table8", "acp_table9", "acp_table10", "acp_fig10", "acp_fig11", "acp_fig12")
    for name in tables.names():
        table = tables.get(name)
        assert table.rows and {row.runner for row in table.rows} <= {"acp_params", "rerank", "kvmmn"}
    with pytest.raises(ValueError, match="unknown table 'nope'"):
        tables.get("nope")
    with pytest.raises(ValueError, match="has no row"):
        tables.get("acp_table3").select(["ACP-Huge"])


def test_paper_numbers_of_spot_checked_rows():
    # Numbers cross-checked against the papers' prose (e.g. "mAP increased to 71.99% from 50.31%").
    table_v = tables.get("acp_table5")
    assert table_v.row("msmt17/acp").paper == {"rank-1": 81.81, "mAP": 71.99, "time": 3.6}
    assert table_v.row("msmt17/none").paper["mAP"] == 50.31
    assert table_v.row("market1501/gnn").paper["mAP"] == 94.55
    assert table_v.row("vehicleid_large/acp").paper == {"rank-1": 81.72, "rank-5": 91.87, "time": 5.3}
    assert table_v.row("veriwild_large/sca").paper == {"rank-1": None, "mAP": None, "time": None}
    assert len(table_v.rows) == 10 * 9
    exp_b = tables.get("acp_table7").row("exp_B")
    assert exp_b.paper == {"rank-1": 86.98, "mAP": 77.90}
    assert exp_b.settings["acp"]["overrides"] == acp_model.TABLE_VII["B"] and exp_b.settings["acp"]["preset"] == "xl"
    fig10 = tables.get("acp_fig10")
    assert fig10.row("acp/k1=53").paper == {"rank-1": 82.29} and fig10.row("aqe/k1=12").paper == {"mAP": 66.54}
    assert tables.get("acp_fig12").row("acp/k2=8").paper == {"mAP": 88.30}
    base = tables.get("kvmmn_table3").row("Base")
    assert base.paper == {"rank-1": 87.1, "rank-5": 98.9, "rank-10": 99.6}
    assert base.settings["model"]["feature_dim"] == 256 and base.settings["train"]["gallery_size"] == 10
    assert tables.get("kvmmn_table3").row("D/M=2-rand").settings["train"]["mining"] == "rand"
    assert tables.get("kvmmn_table1").row("market1501/KVM-MN").paper == {"rank-1": 91.5, "mAP": 78.0}


def test_table_iv_parameters_and_their_resolution():
    assert acp_tables.table_iv_settings("ecn", "veri776")["params"] == {"k": 60, "t": 5, "q": 12}
    assert acp_tables.table_iv_settings("acp", "veri776")["params"] == {"k2": 10}
    assert acp_tables.preset_for("vehicleid_small") == "xl" and acp_tables.preset_for("msmt17") == "basic"
    gallery = np.repeat(np.arange(10), 5)  # N/C = 5
    nc = rerank_rows.resolve_params(acp_tables.table_iv_settings("alpha_qe_k_reciprocal", "msmt17"), gallery)
    assert nc == {"alpha": 3.0, "k2": 6, "k": 5, "k1": 5}
    # VehicleID: neighbourhood 4, and GNN's k2 = 6 clipped to k1 = 4.
    assert rerank_rows.resolve_params(acp_tables.table_iv_settings("gnn", "vehicleid_small"), gallery) == \
        {"k1": 4, "k2": 4}
    assert rerank_rows.resolve_params(acp_tables.table_iv_settings("ecn", "msmt17"), gallery) == \
        {"k": 25, "t": 3, "q": 8}


def test_list_shows_tables_and_rows():
    overview = run.list_tables()
    for name in tables.names():
        assert name in overview
    detail = run.list_tables("acp_table3")
    assert "ACP-Basic" in detail and "params_M=4.61" in detail and "maccs_G_k1=50=2.4" in detail
    with command_line("--list", "--table=kvmmn_table3") as out:
        assert run_binary.main(["run"]) == 0
    assert "D/M=2-hard" in out.getvalue() and "paper: rank-1=78" in out.getvalue()


# ------------------------------------------------------------------------------------------- Table III end to end
def test_table_iii_runs_end_to_end_with_csv_and_markdown(tmp_path):
    context = smoke_context(tmp_path)
    with command_line("--table=acp_table3", "--scale=smoke", f"--results_dir={context.results_dir}",
                      "--verbose=0") as out:
        assert run_binary.main(["run"]) == 0
    assert "2 row(s) run" in out.getvalue() and "SMOKE" in out.getvalue()
    lines = read_csv(os.path.join(context.results_dir, "acp_table3.csv"))
    assert [(line["row"], line["metric"]) for line in lines] == [
        (row, metric) for row in ("ACP-Basic", "ACP-XL") for metric in ("params_M", "maccs_G_k1=25", "maccs_G_k1=50")]
    for line in lines:
        preset = "basic" if line["row"] == "ACP-Basic" else "xl"
        config = acp_model.make_config(preset)
        expected = {"params_M": acp_params.count_params(config).total_trainable / 1e6,
                    "maccs_G_k1=25": sum(acp_params.count_maccs(config, 25, 6).values()) / 1e9,
                    "maccs_G_k1=50": sum(acp_params.count_maccs(config, 50, 6).values()) / 1e9}[line["metric"]]
        assert float(line["ours"]) == pytest.approx(expected, rel=1e-5)
        assert float(line["diff"]) == pytest.approx(float(line["ours"]) - float(line["paper"]), abs=1e-7)
        assert line["scale"] == "smoke" and line["unit"] in ("M", "G")
    xl_params = next(l for l in lines if l["row"] == "ACP-XL" and l["metric"] == "params_M")
    assert float(xl_params["paper"]) == 62.48 and abs(float(xl_params["diff"])) < 0.01
    markdown = open(os.path.join(context.results_dir, "acp_table3.md")).read()
    assert "# ACP Table III" in markdown and "Smoke scale" in markdown
    assert "| ACP-XL | no data (analytic count) | 62.48 | 62.48 | -0.00 | 1.260 | 1.260 | +0.000 | 2.412 | 2.400 |" \
        in markdown


def test_resume_skips_finished_rows_and_redoes_a_half_written_one(tmp_path):
    context = smoke_context(tmp_path)
    os.makedirs(context.results_dir)
    path = os.path.join(context.results_dir, "acp_table3.csv")
    # A killed run: ACP-Basic finished (with a value the runner would never produce), ACP-XL half written.
    fake = [{"row": "ACP-Basic", "metric": m, "ours": "99", "paper": "", "diff": "", "unit": "M", "scale": "smoke",
             "data": "d", "seconds": "1", "info": "{}"} for m in ("params_M", "maccs_G_k1=25", "maccs_G_k1=50")]
    fake.append({**fake[0], "row": "ACP-XL"})
    with open(path, "w", newline="") as handle:
        writer = csv.DictWriter(handle, results.COLUMNS)
        writer.writeheader()
        writer.writerows(fake)
        handle.write("ACP-XL,maccs_G_k1=25,1.2")  # cut short by the kill
    outcome = run.run_table("acp_table3", context, log=lambda text: None)
    assert outcome["skipped"] == ["ACP-Basic"] and outcome["ran"] == ["ACP-XL"] and not outcome["failed"]
    lines = read_csv(path)
    assert [line["ours"] for line in lines if line["row"] == "ACP-Basic"] == ["99", "99", "99"]
    assert [line["metric"] for line in lines if line["row"] == "ACP-XL"] == [
        "params_M", "maccs_G_k1=25", "maccs_G_k1=50"]
    assert run.run_table("acp_table3", context, log=lambda text: None)["ran"] == []
    with pytest.raises(results.ResultsError, match="smoke-scale results"):
        run.run_table("acp_table3", Context(scale="paper", results_dir=context.results_dir), log=lambda text: None)


# ------------------------------------------------------------------------------------------- re-ranking rows
@pytest.fixture(scope="module")
def rerank_run(tmp_path_factory):
    """acp_fig12 rows at smoke scale on a small precomputed feature file (ACP trained once, 8 steps)."""
    root = tmp_path_factory.mktemp("rerank")
    features_dir = root / "features"
    features_dir.mkdir()
    features = write_feature_file(features_dir / "synthetic.npz")
    context = smoke_context(root, features_dir=str(features_dir))
    rows = ["k_reciprocal/k2=6", "acp/k2=2"]
    outcome = run.run_table("acp_fig12", context, rows, log=lambda text: None)
    return {"context": context, "outcome": outcome, "features": features}


def test_rerank_rows_match_the_library(rerank_run):
    outcome = rerank_run["outcome"]
    assert outcome["ran"] == ["acp/k2=2", "k_reciprocal/k2=6"] and not outcome["failed"]
    lines = read_csv(outcome["csv"])
    values = {(l["row"], l["metric"]): l for l in lines}
    expected = rerank_runner.evaluate_method(feature_io.load_features(rerank_run["features"]), "k_reciprocal",
                                             {"k1": 32, "k2": 6, "lambda_value": 0.3})
    assert float(values["k_reciprocal/k2=6", "mAP"]["ours"]) == pytest.approx(100 * expected["mAP"], abs=1e-3)
    assert float(values["k_reciprocal/k2=6", "rank-1"]["ours"]) == pytest.approx(100 * expected["cmc"][0], abs=1e-3)
    paper = values["acp/k2=2", "mAP"]
    assert float(paper["paper"]) == 87.70
    assert float(paper["diff"]) == pytest.approx(float(paper["ours"]) - 87.70, abs=1e-3)
    assert values["k_reciprocal/k2=6", "mAP"]["paper"] == "" and values["k_reciprocal/k2=6", "mAP"]["diff"] == ""
    assert all(l["data"] == "synthetic (stand-in for VERI-Wild (S))" for l in lines)
    import json

    train_dir = json.loads(values["acp/k2=2", "mAP"]["info"])["acp_train_dir"]
    assert os.path.isfile(os.path.join(train_dir, "acp_config.json"))
    markdown = open(outcome["md"]).read()
    assert "Pending rows (22)" in markdown and "| acp/k2=2 | synthetic (stand-in for VERI-Wild (S))" in markdown


def test_rows_with_the_same_acp_configuration_share_one_trained_model():
    from experiments.runners import acp_models

    def variant(table, row, smoke=False):
        return acp_models.variant_name(*acp_models.configuration(tables.get(table).row(row).settings["acp"], smoke))

    shared = {variant("acp_table5", "veriwild_small/acp"), variant("acp_table7", "exp_G"),
              variant("acp_table8", "layers_3"), variant("acp_table9", "heads_16"), variant("acp_table10", "memory_8"),
              variant("acp_fig12", "acp/k2=2")}
    assert shared == {"xl"}
    assert variant("acp_table8", "layers_4") == "xl-num_layers=4-warmup_epochs=20"
    assert variant("acp_table7", "exp_A") == "xl-use_fusion=False-use_memory=False-use_refinement=False"
    assert variant("acp_table9", "heads_128", smoke=True).startswith("xl-num_heads=128-memory_dim=8-model_dim=128")


# ------------------------------------------------------------------------------------------- figures
@pytest.fixture(scope="module")
def plotting():
    pytest.importorskip("matplotlib", reason="figures need the optional 'plots' extra (matplotlib)")
    pytest.importorskip("sklearn", reason="t-SNE needs the optional 'plots' extra (scikit-learn)")
    from experiments import figures

    return figures


def test_k2_sweep_figure_from_results(rerank_run, plotting, tmp_path):
    output = plotting.draw_figure("k2_sweep", str(tmp_path / "fig12.png"), table="acp_fig12",
                                  results_dir=rerank_run["context"].results_dir)
    assert_png(output)
    with pytest.raises(ValueError, match="no finished rows of the k1 sweep"):
        plotting.draw_figure("k1_sweep", str(tmp_path / "fig10.png"), table="acp_fig10",
                             results_dir=rerank_run["context"].results_dir)


def test_memory_attention_and_tsne_figures(rerank_run, plotting, tmp_path):
    from acp import checkpoint as acp_checkpoint
    from experiments.plots import memory_attention

    lines = read_csv(rerank_run["outcome"]["csv"])
    import json

    train_dir = next(json.loads(l["info"])["acp_train_dir"] for l in lines if l["row"] == "acp/k2=2")
    model = acp_checkpoint.restore_model(train_dir)[0]
    features = feature_io.load_features(rerank_run["features"])
    weights = memory_attention.memory_attention(model, features, query_index=2, k1=11, k2=4)
    assert weights["init"].shape == (8, 11) and weights["refinement"].shape == (8, 4)
    np.testing.assert_allclose(weights["init"].sum(axis=1), 1.0, rtol=1e-5)
    np.testing.assert_allclose(weights["refinement"].sum(axis=1), 1.0, rtol=1e-5)
    assert weights["same_identity"][0] and len(weights["gallery"]) == 10
    assert_png(plotting.draw_figure("memory_attention", str(tmp_path / "fig7.png"), checkpoint=train_dir,
                                    features=rerank_run["features"], list_length=11, k2=4))
    assert_png(plotting.draw_figure("tsne", str(tmp_path / "fig3.png"), features=rerank_run["features"],
                                    checkpoint=train_dir, k1=8, max_identities=8))


# ------------------------------------------------------------------------------------------- KVM-MN rows
@pytest.fixture(scope="module")
def kvmmn_run(tmp_path_factory):
    """KVM-MN Table 3's "D/10K-steps" row at smoke scale (2 training steps) on a small synthetic dataset."""
    root = tmp_path_factory.mktemp("kvmmn")
    context = smoke_context(root, data_root=str(root / "synthetic"), synthetic_options=SYNTHETIC)
    outcome = run.run_table("kvmmn_table3", context, ["D/10K-steps"], log=lambda text: None)
    return {"context": context, "outcome": outcome}


def test_kvmmn_row_trains_evaluates_and_keeps_the_row_structure(kvmmn_run):
    outcome = kvmmn_run["outcome"]
    assert outcome["ran"] == ["D/10K-steps"] and not outcome["failed"]
    lines = read_csv(outcome["csv"])
    assert [l["metric"] for l in lines] == ["rank-1", "rank-5", "rank-10"]
    ranks = [float(l["ours"]) for l in lines]
    assert 0 <= ranks[0] <= ranks[1] <= ranks[2] <= 100
    import json

    run_dir = json.loads(lines[0]["info"])["runs"][0]
    stored = json.load(open(os.path.join(run_dir, "kvmmn_config.json")))["config"]
    assert stored["max_steps"] == 2 and stored["gallery_size"] == 10 and stored["dataset"] == "synthetic"
    assert stored["model"]["feature_dim"] == 32 and stored["model"]["backbone"] == "tiny"
    assert stored["dataset_options"]["num_identities"] == 24


def test_co_attention_figure(kvmmn_run, plotting, tmp_path):
    import json

    lines = read_csv(kvmmn_run["outcome"]["csv"])
    run_dir = json.loads(lines[0]["info"])["runs"][0]
    record = kvmmn_run["context"].load(tables.get("kvmmn_table3").row("Base").data)
    output = plotting.draw_figure("co_attention", str(tmp_path / "fig3.png"), checkpoint=run_dir,
                                  image_a=record.query[0].path, image_b=record.gallery[0].path,
                                  heads=["1", "4"], locations=["0:0", "3:1"])
    assert_png(output)
    with pytest.raises(ValueError, match="outside the 4x2 feature map"):
        plotting.draw_figure("co_attention", str(tmp_path / "bad.png"), checkpoint=run_dir,
                             image_a=record.query[0].path, image_b=record.gallery[0].path, locations=["9:9"])


def test_smoke_settings_keep_each_ablations_structure():
    from experiments.runners import kvmmn_rows

    row = tables.get("kvmmn_table3").row("A/H=8")
    model, train = kvmmn_rows.smoke_settings(row.settings["model"], row.settings["train"])
    assert model["num_heads"] == 8 and model["key_dim"] == 4 and model["feature_dim"] == 32
    assert train["max_steps"] == 10 and train["num_samples"] == 40 and train["gallery_size"] == 10
    model, train = kvmmn_rows.smoke_settings(*[tables.get("kvmmn_table3").row("F").settings[k]
                                               for k in ("model", "train")])
    assert model["key_dim"] == 16 and train["max_steps"] == 25 and train["random_rotation"]
    assert kvmmn_tables.SHORTLIST["market1501"] == 100
