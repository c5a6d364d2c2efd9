"""engine.cli: the typed NAME=VALUE parser, flags derived from config dataclasses with their checks, deprecated
spellings, --help, one-line user errors (exit 2) and --debug, the dataset flag set, quiet TensorFlow start-up;
engine.progress.Progress in logs and on terminals."""
from __future__ import annotations

import dataclasses
import io
import os
import subprocess
import sys

import pytest
from absl import app, flags

from engine import cli
from engine.progress import Progress

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@dataclasses.dataclass(frozen=True)
class Toy:
    """A config as the project writes them.

    rate: the learning rate. steps: how many steps. size: height, width.
    name: a label, any string.
    fast: go fast. widths: one width per block. limit: optional cap.
    """

    steps: int
    rate: float = 0.5
    size: tuple[int, int] = (4, 2)
    name: str = "toy"
    fast: bool = False
    widths: tuple[float, ...] = (1.0, 2.0)
    limit: int | None = None


def toy_flags(**kwargs):
    fv = cli.new_flags()
    return fv, cli.define_config_flags(fv, Toy, checks={"rate": cli.POSITIVE, "steps": cli.NON_NEGATIVE,
                                                        "size": cli.AT_LEAST_ONE}, **kwargs)


def parse_error(fv, *args) -> str:
    with pytest.raises(flags.Error) as caught:
        cli.parse(fv, ["prog", *args])
    return cli.error_line(caught.value)


def test_parse_value_types():
    assert cli.parse_value("3", int) == 3 and cli.parse_value("0.5", float) == 0.5
    assert cli.parse_value("FALSE", bool) is False and cli.parse_value("yes", bool) is True
    assert cli.parse_value("4:5:6", tuple[int, ...]) == (4, 5, 6) == cli.parse_value("4,5,6", tuple[int, ...])
    assert cli.parse_value("none", int | None) is None and cli.parse_value("7", int | None) == 7
    assert [cli.parse_value(t, None) for t in ("486", "0.5", "true", "abc")] == [486, 0.5, True, "abc"]
    for text, kind, message in [("maybe", bool, "true or false"), ("1.5", int, "an integer"), ("x", float, "number"),
                                ("1,2,3", tuple[int, int], "expected 2")]:
        with pytest.raises(ValueError, match=message):
            cli.parse_value(text, kind)


def test_parse_assignments_is_typed_and_names_the_flag():
    assert cli.parse_assignments(["steps=3", "fast=true", "widths=1:2.5", "limit=none"], Toy, "--override") == \
        {"steps": 3, "fast": True, "widths": (1.0, 2.5), "limit": None}
    with pytest.raises(cli.UserError, match=r"--override='stepz=3': unknown name 'stepz'; known: fast, limit"):
        cli.parse_assignments(["stepz=3"], Toy, "--override")
    with pytest.raises(cli.UserError, match=r"--override='rate=nan': must be a finite number"):
        cli.parse_assignments(["rate=nan"], Toy, "--override")
    with pytest.raises(cli.UserError, match=r"--param='k=-1': must be >= 1"):
        cli.parse_assignments(["k=-1"], {"k": int}, "--param", checks={"k": cli.AT_LEAST_ONE})
    with pytest.raises(cli.UserError, match="expected NAME=VALUE"):
        cli.parse_assignments(["steps"], Toy, "--override")
    assert cli.parse_assignments(["other=2"], {}, "--dataset_option", allow_unknown=True) == {"other": 2}


def test_config_flags_come_from_the_dataclass():
    fv, toy = toy_flags(defaults={"steps": 10})
    cli.parse(fv, ["prog"])
    assert toy.build() == Toy(steps=10)
    assert fv["rate"].help == "the learning rate." and fv["size"].help == "height, width."  # the docstring table
    cli.parse(fv, ["prog", "--rate=0.25", "--size=8,3", "--widths=3", "--fast", "--limit=5", "--name=a b"])
    assert toy.build(steps=1) == Toy(1, 0.25, (8, 3), "a b", True, (3.0,), 5)
    assert cli.unchecked_numeric_flags(fv) == ["limit"]  # floats are finite-checked; ints need a range


@pytest.mark.parametrize("args, message", [
    (["--rate=-1"], "flag --rate=-1.0: must be > 0"),
    (["--rate=nan"], "flag --rate=nan: must be a finite number"),
    (["--widths=1,inf"], "flag --widths=1.0,inf: must be a finite number"),
    (["--size=abc,1"], "flag --size=abc,1: expected an integer, got 'abc'"),
    (["--size=3"], "flag --size=3: expected 2 comma-separated values, got 1"),
    (["--size=0,2"], "flag --size=0,2: must be >= 1"),
    (["--steps=-3"], "flag --steps=-3: must be >= 0"),
])
def test_flag_checks_name_the_flag(args, message):
    fv, _ = toy_flags()
    assert parse_error(fv, *args) == f"error: {message}"


def test_a_field_without_help_is_refused():
    @dataclasses.dataclass
    class Bare:
        x: int = 1

    with pytest.raises(TypeError, match="Bare.x has no help text"):
        cli.define_config_flags(cli.new_flags(), Bare)
    with pytest.raises(TypeError, match=r"no such field\(s\) \['y'\]"):
        cli.define_config_flags(cli.new_flags(), Bare, help={"x": "an x", "y": "none such"})


def test_deprecated_alias(capsys):
    fv, toy = toy_flags()
    cli.deprecated_alias(fv, "learning_rate", "rate")
    cli.parse(fv, ["prog", "--steps=1", "--learning_rate=0.125"])
    assert toy.build().rate == 0.125
    assert "warning: --learning_rate is deprecated; use --rate" in capsys.readouterr().err
    assert parse_error(fv, "--learning_rate=-2") == "error: flag --rate=-2.0: must be > 0"  # the new flag's check
    with pytest.raises(cli.UserError, match="--learning_rate and --rate are the same flag"):
        cli.parse(fv, ["prog", "--learning_rate=0.1", "--rate=0.2"])


def test_help_lists_the_binarys_own_flags(capsys):
    fv, _ = toy_flags()
    cli.deprecated_alias(fv, "learning_rate", "rate")
    with pytest.raises(SystemExit) as done:
        cli.run(lambda argv: 0, fv, "Toy trainer: trains toys.\n\nDetails nobody reads.", ["toy-train", "--help"])
    out = capsys.readouterr().out
    assert done.value.code == 0
    assert "Toy trainer: trains toys." in out and "Details" not in out
    assert "  --rate\n      the learning rate. [default: 0.5; > 0]" in out
    assert "--size" in out and "[default: 4,2; >= 1]" in out and "--learning_rate: deprecated spelling of --rate" in out
    assert "--verbosity" not in out and "--helpfull" not in out  # absl's own flags are not this binary's


def test_user_errors_are_one_line_and_exit_2(capsys):
    fv, _ = toy_flags()

    def main(argv):
        raise cli.UserError(f"the toy file {fv['name'].value}.npz is broken\nsecond line")

    for argv, line in [(["toy", "--rate=0"], "error: flag --rate=0.0: must be > 0"),
                       (["toy", "--nosuchflag"], "error: Unknown command line flag 'nosuchflag'"),
                       (["toy", "extra"], "error: unexpected arguments: extra"),
                       (["toy", "--name=x"], "error: the toy file x.npz is broken; second line")]:
        with pytest.raises(SystemExit) as done:
            cli.run(main, fv, "Toy.", argv)
        err = capsys.readouterr().err
        assert done.value.code == 2 and err == line + "\n", (argv, err)

    with pytest.raises(FileNotFoundError):  # --debug: the exception itself, for its traceback
        cli.run(lambda argv: open("/nonexistent/x.bin"), fv, "Toy.", ["toy", "--debug"])
    with pytest.raises(SystemExit) as done:
        cli.run(lambda argv: open("/nonexistent/x.bin"), fv, "Toy.", ["toy"])
    assert done.value.code == 2 and capsys.readouterr().err == "error: No such file or directory: /nonexistent/x.bin\n"
    with pytest.raises(SystemExit) as done:
        cli.run(lambda argv: 3, fv, "Toy.", ["toy"])
    assert done.value.code == 3
    with pytest.raises(KeyError):  # a bug is not a user error: its traceback shows
        cli.run(lambda argv: {}["missing"], fv, "Toy.", ["toy"])


def test_dataset_flags_check_the_registry_and_type_reader_options():
    from data import datasets

    fv = cli.new_flags()
    cli.define_dataset_flags(fv)
    assert parse_error(fv, "--dataset=market") == ("error: flag --dataset=market: unknown dataset; registered: "
                                                   + ", ".join(datasets.names()))
    cli.parse(fv, ["prog", "--dataset=cuhk01", "--dataset_option=test_ids=486", "--dataset_option=check_counts=no"])
    assert cli.dataset_kwargs(fv) == dict(name="cuhk01", root=None, split=None, test_ids=486, check_counts=False)
    cli.parse(fv, ["prog", "--dataset=cuhk01", "--dataset_option=test_ids=many"])
    with pytest.raises(cli.UserError, match=r"--dataset_option \(dataset cuhk01\)='test_ids=many': expected an integer"):
        cli.dataset_kwargs(fv)
    cli.parse(fv, ["prog", "--dataset=cuhk01", "--dataset_option=tests=3"])
    with pytest.raises(cli.UserError, match="unknown name 'tests'; known: check_counts, num_splits, test_ids"):
        cli.dataset_kwargs(fv)
    cli.parse(fv, ["prog", "--dataset=synthetic", "--dataset_option=num_identities=24"])  # open-ended reader
    assert cli.dataset_kwargs(fv)["num_identities"] == 24

    def load(root, split=None, scale: float = 1.0):
        raise AssertionError("not read here")

    name = "cli_test_dataset"
    if name not in datasets.names():
        datasets.register(name, load)
    cli.parse(fv, ["prog", f"--dataset={name}", "--dataset_option=scale=2"])
    assert cli.dataset_kwargs(fv)["scale"] == 2.0
    assert name in cli.help_text(fv, "Reads data.", "prog")  # registered after the flag was declared


class Terminal(io.StringIO):
    def isatty(self):
        return True


def test_progress_writes_plain_lines_into_logs():
    log = io.StringIO()
    progress = Progress(5, unit="image", stream=log, log_seconds=0.0)
    for _ in range(5):
        progress.add(1)
    progress.update(5)
    lines = log.getvalue().splitlines()
    assert "\r" not in log.getvalue() and "\033" not in log.getvalue()
    assert len(lines) == 5 and lines[-1].startswith("5/5 [") and "image/s in " in lines[-1]
    quiet = io.StringIO()
    Progress(3, stream=quiet, log_seconds=3600).update(1)
    assert quiet.getvalue() == ""  # not due yet
    terminal = Terminal()
    bar = Progress(2, stream=terminal, refresh_seconds=0.0)
    bar.add(1), bar.add(1)
    assert terminal.getvalue().startswith("\r1/2 [") and terminal.getvalue().endswith("\033[K\n")
    silent = io.StringIO()
    Progress(2, stream=silent, enabled=False).update(2)
    assert silent.getvalue() == ""


def test_tensorflow_starts_quietly():
    code = ("import sys\nfrom engine import cli\ncli.quiet_tensorflow(sys.argv)\nimport tensorflow as tf\n"
            "print(float(tf.reduce_sum(tf.ones(3))))")
    done = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=300,
                          env={k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"})
    assert done.returncode == 0 and done.stdout == "3.0\n", done.stderr
    assert done.stderr == "", done.stderr


def test_loop_flags_are_each_binarys_own_and_build_the_loop_config(tmp_path):
    first, second = cli.new_flags(), cli.new_flags()
    cli.define_loop_flags(first, max_steps=42)
    cli.define_loop_flags(second, max_steps=7)  # another binary in the same process: its own default
    assert first["max_steps"].default == 42 and second["max_steps"].default == 7
    cli.parse(first, ["prog", f"--train_dir={tmp_path}", "--checkpoint_every=5"])
    config = cli.loop_config_from_flags(first, log_every=2)
    assert (config.max_steps, config.checkpoint_every, config.log_every, config.train_dir) == (42, 5, 2, str(tmp_path))
    cli.parse(second, ["prog"])
    with pytest.raises(app.UsageError, match="--train_dir is required"):
        cli.loop_config_from_flags(second)
    assert parse_error(second, "--keep_checkpoints=0") == "error: flag --keep_checkpoints=0: must be >= 1"
    with pytest.raises(TypeError, match="unknown flag defaults"):
        cli.define_loop_flags(cli.new_flags(), max_stepz=1)


def test_strict_decoding_flag_reaches_every_image_read(tmp_path):
    import cv2
    import numpy as np

    from data import pipeline

    pixels = cv2.GaussianBlur(np.random.default_rng(0).integers(0, 256, (64, 32, 3), dtype=np.uint8), (5, 5), 0)
    data = cv2.imencode(".jpg", pixels, [cv2.IMWRITE_JPEG_QUALITY, 92])[1].tobytes()
    middle = len(data) - 200
    path = tmp_path / "damaged.jpg"
    path.write_bytes(data[:middle] + bytes(30) + data[middle:])  # scan data with 30 bytes too many
    fv = cli.new_flags()
    cli.define_dataset_flags(fv, strict_decoding=True)
    try:
        cli.parse(fv, ["prog", "--nostrict_decoding"])
        cli.dataset_kwargs(fv)
        assert pipeline.read_image(str(path)).shape == (64, 32, 3)  # what libjpeg recovers
        cli.parse(fv, ["prog"])
        cli.dataset_kwargs(fv)
        with pytest.raises(ValueError, match="damaged.jpg: corrupt JPEG"):
            pipeline.read_image(str(path))
    finally:
        pipeline.set_strict_decoding(True)
