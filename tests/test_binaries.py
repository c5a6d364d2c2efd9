"""The binaries (issue 16 items 1, 2, 5; issue 21 item 4): libraries declare no flag, every console script's
--help shows its description and its own flags, its defaults do not depend on what else was imported, every numeric
flag has a range, and user errors are one line naming the flag or file, with exit status 2.

Each check runs `tests/binaries_child.py` in one child process (one TensorFlow import for all console scripts)."""
import json
import os
import subprocess
import sys

import numpy as np
import pytest
import scipy.io

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(REPO, "tests"))
import binaries_child  # noqa: E402

MOVED = list(binaries_child.console_scripts())


def child(*args) -> object:
    done = subprocess.run([sys.executable, os.path.join(REPO, "tests", "binaries_child.py"), *args], cwd=REPO,
                          capture_output=True, text=True, timeout=600)
    lines = [line for line in done.stdout.splitlines() if line.startswith("RESULT")]
    assert done.returncode == 0 and lines, done.stderr[-3000:]
    return json.loads(lines[-1][len("RESULT"):])


def test_importing_a_library_module_declares_no_flag():
    for order in ("forward", "reverse"):
        added = {name: flags for name, flags in child("imports", order).items() if flags}
        assert added == {}, f"modules that declare absl flags when imported ({order}): {added}"


@pytest.fixture(scope="module")
def scripts():
    return child("scripts", "forward"), child("scripts", "reverse")


def test_every_moved_console_script_has_a_help_with_its_own_flags(scripts):
    forward, _ = scripts
    assert len(MOVED) >= 15
    for name in MOVED:
        script = forward[name]
        assert script["code"] == 0, name
        text = script["help"]
        assert script["doc"].split(":")[0] == name, f"{name}: its docstring does not start with its name"
        assert script["doc"] in text and f"usage: {name} " in text, (name, text[:300])
        assert len(script["flags"]) > 2, name
        for flag in script["flags"]:
            assert f"  --{flag}" in text, (name, flag)
        assert "--verbosity" not in text and "--helpfull" not in text  # absl's flags are not the binary's


def test_defaults_do_not_depend_on_import_order_and_every_numeric_flag_has_a_range(scripts):
    forward, reverse = scripts
    for name in MOVED:
        assert forward[name]["defaults"] == reverse[name]["defaults"], name
        assert forward[name]["unchecked"] == [], f"{name}: numeric flags without a range: {forward[name]['unchecked']}"
    assert forward["acp-train"]["defaults"]["batch_size"] == "16" and forward["kvmmn-train"]["defaults"][
        "batch_size"] == "20"  # one name, each binary's own default


def feature_file(path, **changes):
    from features import feature_file as feature_files

    rng = np.random.default_rng(0)
    fields = dict(embedding=rng.normal(size=(8, 4)).astype(np.float32), pid=np.repeat([1, 2], 4),
                  camid=np.tile([0, 1], 4), split=np.array([1, 1, 2, 2, 2, 2, 2, 2]),
                  path=np.array([f"{i}.jpg" for i in range(8)]), dataset="market1501", **changes)
    return feature_files.save_features(str(path), feature_files.FeatureSet(**fields))


def test_user_errors_are_one_line_naming_the_flag_or_file(tmp_path):
    not_h5 = tmp_path / "weights.h5"
    not_h5.write_text("not weights")
    pickled = tmp_path / "pickled.npz"
    np.savez(pickled, version=np.array(1), embedding=np.array([{"a": 1}], dtype=object))
    good = feature_file(tmp_path / "good.npz")
    np.save(tmp_path / "q.npy", np.ones((3, 4), np.float32))
    forged = tmp_path / "forged_run"
    forged.mkdir()
    (forged / "kvmmn_config.json").write_text(json.dumps({"config": {"train_dir": str(forged), "model": {
        "feature_dim": [1, 2]}}}))
    cases = [
        (["acp-train", "--learning_rate=-1", "--features=f.npz", "--train_dir=t"], "--learning_rate=-1.0"),
        (["kvmmn-train", "--learning_rate=nan", "--train_dir=t"], "--learning_rate=nan"),
        (["acp-rerank", "--ranks=0,-3", f"--features={good}"], "--ranks"),
        (["acp-rerank", "--top_list=out", f"--features={good}"], "out: a --top_list ends in"),
        (["acp-baseline-train", "--image_size=abc,1", "--train_dir=t"], "--image_size=abc,1"),
        (["acp-baseline-train", "--blocks=a,b", "--train_dir=t"], "--blocks=a,b"),
        (["acp-baseline-train", f"--pretrained={not_h5}", f"--train_dir={tmp_path / 't'}"], f"--pretrained={not_h5}"),
        (["acp-rerank", f"--features={pickled}"], str(pickled)),
        (["acp-import-features", f"--query_features={tmp_path / 'q.npy'}", f"--output={tmp_path / 'o.npz'}"],
         "gallery features are missing"),
        (["kvmmn-export", f"--checkpoint={forged}", f"--export_dir={tmp_path / 'export'}"], str(forged)),
        (["acp-extract", "--checkpoint=x", f"--output={tmp_path / 'o.npz'}", "--dataset=market1501",
          f"--data_root={tmp_path / 'no_such_folder'}"], str(tmp_path / "no_such_folder")),
        (["acp-extract", "--dataset=market", "--checkpoint=x", "--output=o.npz"], "--dataset=market"),
        (["kvmmn-train", "--train_dir=t", "--dataset_option=num_identities=many"], "num_identities=many"),
    ]
    assert_one_line_errors(tmp_path, cases)
    assert not os.path.exists(tmp_path / "t")  # nothing written


def test_broken_files_read_by_libraries_are_one_line(tmp_path):
    mat = tmp_path / "pytorch_result.mat"
    scipy.io.savemat(mat, {"query_f": np.ones((3, 4)), "gallery_f": np.ones((5, 4))})
    half = tmp_path / "half.mat"
    half.write_bytes(mat.read_bytes()[: mat.stat().st_size // 2])
    good = feature_file(tmp_path / "good.npz")
    crc = tmp_path / "crc.npz"
    content = bytearray(open(good, "rb").read())
    content[content.index(b"embedding.npy") + 200] ^= 0xFF  # inside the stored array: the member's CRC fails
    crc.write_bytes(bytes(content))
    assert_one_line_errors(tmp_path, [
        (["acp-import-features", f"--input={half}", f"--output={tmp_path / 'o.npz'}"], str(half)),
        (["acp-rerank", f"--features={crc}"], str(crc))])


def assert_one_line_errors(tmp_path, cases):
    """Each [script, *args] exits 2 with one stderr line "error: ..." (deprecation warnings aside) holding its
    `named` flag or file."""
    path = tmp_path / "cases.json"
    path.write_text(json.dumps([argv for argv, _ in cases]))
    results = child("errors", str(path))
    failures = []
    for (argv, named), result in zip(cases, results):
        lines = [line for line in result["stderr"].splitlines() if not line.startswith("warning:")]
        if result["code"] != 2 or len(lines) != 1 or not lines[0].startswith("error: ") or named not in lines[0]:
            failures.append(f"{' '.join(argv)} -> exit {result['code']}: {result['stderr'][-600:]!r}")
    assert not failures, "\n".join(failures)
