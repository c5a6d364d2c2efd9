"""The ACP configuration stored beside ACP checkpoints, and restoring a trained ACP model from them.

`acp-train` writes `<train_dir>/acp_config.json` = {"preset": name, "config": ACPConfig fields} before its first
step; a resumed run and `acp-rerank --checkpoint=...` read it back, so a checkpoint is never restored into a model
of another preset or configuration: the error names both configurations.
"""
from __future__ import annotations

import dataclasses
import json
import os

import tensorflow as tf

from acp import model as acp_model
from engine import atomic
from engine import checkpoints
from engine import run_dir

CONFIG_FILE = "acp_config.json"


class CheckpointMismatchError(ValueError):
    """An ACP checkpoint belongs to another preset / configuration than the one asked for."""


def describe(preset: str, config: acp_model.ACPConfig) -> str:
    """`ACP-<preset>` plus the fields that differ from the preset's defaults (the whole config if none match)."""
    base = acp_model.PRESETS.get(preset)
    if base is None:
        return f"ACP {config}"
    changed = {f.name: getattr(config, f.name) for f in dataclasses.fields(config)
               if getattr(config, f.name) != getattr(base, f.name)}
    return f"ACP-{preset}" + (f" with {changed}" if changed else "")


def save_config(directory: str, preset: str, config: acp_model.ACPConfig, seed: int | None = None) -> str:
    """Write `directory/CONFIG_FILE`; if one is there already it must hold the same preset and configuration, and
    the same training `seed` (acp-train records it: a resumed run with another seed would draw other sequences)."""
    path = os.path.join(directory, CONFIG_FILE)
    if os.path.exists(path):
        stored_preset, stored = load_config(directory)
        if (stored_preset, stored) != (preset, config):
            raise CheckpointMismatchError(
                f"{path} holds {describe(stored_preset, stored)}, but this run asks for {describe(preset, config)}: "
                "use another --train_dir or the stored --preset/--override flags")
        stored_seed = run_dir.read_json(path).get("seed")
        if seed is not None and stored_seed is not None and stored_seed != seed:
            raise CheckpointMismatchError(f"{path} holds a run trained with --seed={stored_seed}, but this run asks "
                                          f"for --seed={seed}: use another --train_dir or --seed={stored_seed}")
        return path
    os.makedirs(directory, exist_ok=True)
    content = {"preset": preset, "config": dataclasses.asdict(config), **({} if seed is None else {"seed": seed})}
    atomic.write_text(path, json.dumps(content, indent=1))
    return path


def load_config(directory: str) -> tuple[str, acp_model.ACPConfig]:
    """(preset, ACPConfig) stored in `directory/CONFIG_FILE`; errors name the file."""
    path = os.path.join(directory, CONFIG_FILE)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{path} not found: is {directory} an acp-train --train_dir?")
    try:
        with open(path) as handle:
            stored = json.load(handle)
        fields = dict(stored["config"])
        fields["block_dims"] = tuple(fields["block_dims"])
        # Files written before the rank encoding existed describe models trained without it.
        fields.setdefault("position_encoding", False)
        return str(stored["preset"]), acp_model.ACPConfig(**fields)
    except (json.JSONDecodeError, KeyError, TypeError, ValueError) as err:
        raise ValueError(f"{path}: not an ACP configuration file ({type(err).__name__}: {err})") from None


def resolve(checkpoint: str) -> tuple[str, str]:
    """(directory, checkpoint prefix) of `checkpoint`: a train_dir (its newest readable checkpoint) or a prefix
    `<train_dir>/ckpt-<step>` (`engine.run_dir.resolve`: an unreadable one is an error naming its file)."""
    return run_dir.resolve(checkpoint)


def restore_model(checkpoint: str, preset: str | None = None):
    """The ACP model of an `acp-train` checkpoint: (keras.Model, preset, ACPConfig), every weight restored.

    Args:
      checkpoint: a train_dir (latest checkpoint) or a checkpoint prefix.
      preset: when given, the preset the caller expects; a checkpoint of another preset is a
        CheckpointMismatchError naming both.
    A checkpoint that lacks any weight of the model (`engine.checkpoints.restore`) is a CheckpointMismatchError
    naming each missing weight.
    """
    directory, prefix = resolve(checkpoint)
    stored_preset, config = load_config(directory)
    if preset is not None and preset != stored_preset:
        raise CheckpointMismatchError(f"--checkpoint={checkpoint} holds {describe(stored_preset, config)}, "
                                      f"not ACP-{preset} (--preset={preset})")
    model = acp_model.build_acp(config)
    try:
        checkpoints.restore(tf.train.Checkpoint(model=model), prefix)
    except (ValueError, tf.errors.InvalidArgumentError) as err:
        raise CheckpointMismatchError(f"{prefix} does not hold the weights of {describe(stored_preset, config)} "
                                      f"stored in {os.path.join(directory, CONFIG_FILE)}: {err}") from None
    return model, stored_preset, config
