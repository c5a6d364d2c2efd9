"""Export folders in TensorFlow Serving's layout, with a `metadata.json` that describes what was written.

    <export_dir>/            a folder of the exporting tool (`engine.run_dir.claim`: a user's non-empty folder, e.g. a
                             dataset, is refused before anything is written)
    <export_dir>/1/          the first export: saved_model.pb, variables/, assets/, metadata.json
    <export_dir>/2/          the next one ...

TensorFlow Serving loads the highest numbered version of a model base path, so each export is a new version and
never overwrites an earlier one. A version is written complete into a temporary folder beside it and renamed into
place (`engine.atomic.atomic_path`): the SavedModel and its metadata always belong together, even when an export
is killed; the temporaries of killed exports are removed by the next one (`engine.run_dir.prepare`).

`metadata.json` holds what the exporter passes (the model and training configuration, preprocessing, checkpoint)
and `signatures`: each serving signature's inputs and outputs with their dtypes and shapes (null = any size), read
back from the written `saved_model.pb` (the SignatureDefs that TensorFlow Serving and `saved_model_cli show` read),
so the metadata cannot name an input that no signature has.

The exporter binaries (`kvmmn-export`, `acp-baseline-export`, `acp-export`) share their flags (`define_flags`) and
the body of their `main` (`export_checkpoint`): claim the export folder before loading anything, restore the
trained model, export it, print the version folder. Each gives only how its model is restored and written.
"""
from __future__ import annotations

import json
import os
from typing import Any, Callable

from absl import flags, logging

from engine import atomic, cli, run_dir

METADATA_FILE = "metadata.json"


def next_version_dir(export_dir: str) -> str:
    """`<export_dir>/<n>` with n one above the highest existing version (1 for the first)."""
    versions = [int(name) for name in os.listdir(export_dir) if name.isdigit()]
    return os.path.join(export_dir, str(max(versions, default=0) + 1))


def signature_defs(saved_model_dir: str) -> dict:
    """{signature: {"inputs": {name: {"dtype", "shape"}}, "outputs": {...}}} of a written SavedModel, from its
    saved_model.pb (TensorFlow's own signature bookkeeping entries, named `__...`, left out)."""
    import tensorflow as tf
    from tensorflow.core.protobuf import saved_model_pb2

    saved_model = saved_model_pb2.SavedModel()
    with open(os.path.join(saved_model_dir, "saved_model.pb"), "rb") as handle:
        saved_model.ParseFromString(handle.read())

    def describe(tensors):
        return {name: {"dtype": tf.dtypes.as_dtype(info.dtype).name,
                       "shape": None if info.tensor_shape.unknown_rank
                       else [d.size if d.size >= 0 else None for d in info.tensor_shape.dim]}
                for name, info in sorted(tensors.items())}

    signatures = saved_model.meta_graphs[0].signature_def
    return {name: {"inputs": describe(signature.inputs), "outputs": describe(signature.outputs)}
            for name, signature in sorted(signatures.items()) if not name.startswith("__")}


def write_version(archive, export_dir: str, tool: str, metadata: dict) -> str:
    """Write the `keras.export.ExportArchive` `archive` as a new version folder of `export_dir` (module docstring),
    with `metadata.json` = `metadata` + {"signatures": ...}; returns the version folder.

    Raises engine.run_dir.OwnershipError, before anything is written, when `export_dir` is a file, a non-empty
    folder that `tool` did not create, or another tool's folder.
    """
    run_dir.prepare(export_dir, tool)
    version_dir = next_version_dir(export_dir)
    with atomic.atomic_path(version_dir) as temporary:
        archive.write_out(temporary, verbose=False)
        content = {**metadata, "signatures": signature_defs(temporary)}
        atomic.write_text(os.path.join(temporary, METADATA_FILE), json.dumps(content, indent=2))
    return version_dir


def read_metadata(version_dir: str) -> dict:
    """The `metadata.json` of an export version (errors name the file)."""
    return run_dir.read_json(os.path.join(version_dir, METADATA_FILE))


def define_flags(fv: flags.FlagValues, trainer: str) -> None:
    """--checkpoint (a run of the binary `trainer`) and --export_dir, the flags of every exporter binary."""
    flags.DEFINE_string("checkpoint", None, f"Required: a {trainer} --train_dir (its latest checkpoint) or a "
                        "checkpoint prefix (.../ckpt-N).", flag_values=fv)
    flags.DEFINE_string("export_dir", None, "Required: folder of the exports; each export is a new version folder "
                        "in it (<export_dir>/1, /2, ...).", flag_values=fv)


def export_checkpoint(fv: flags.FlagValues, tool: str, trainer: str,
                      restore: Callable[[str], tuple[Any, dict]],
                      export: Callable[[Any, str, dict], str]) -> str:
    """The `main` of an exporter binary whose flags are `define_flags`'s: returns (and prints) the version folder.

    `tool`: the exporter's name, which the export folder is claimed for (`engine.run_dir.claim`) before `restore`
    loads anything, so a folder that is not the exporter's (a dataset, another tool's) is refused first.
    `restore(checkpoint) -> (model, metadata)`: the trained model (whatever `export` takes) and the metadata.json
    entries of its checkpoint (at least "checkpoint", the resolved checkpoint path; "step" when known).
    `export(model, export_dir, metadata) -> version folder`: writes the export (`write_version`).
    """
    checkpoint = cli.require(fv, "checkpoint", f"a {trainer} --train_dir or checkpoint prefix")
    export_dir = cli.require(fv, "export_dir", "the folder the numbered exports go to")
    run_dir.claim(export_dir, tool)  # before loading anything: not into a folder not ours
    model, metadata = restore(checkpoint)
    version_dir = export(model, export_dir, metadata)
    step = f" (step {metadata['step']})" if "step" in metadata else ""
    logging.info("exported %s%s to %s", metadata["checkpoint"], step, version_dir)
    print(version_dir)
    return version_dir
