"""Trained ACP models for the re-ranking rows: trained once per (dataset, configuration) with `acp.training.train` (as
`acp-train`) on the dataset's training features, then shared by every row that uses the same configuration
(Table V's model on VERI-Wild is Table VII's Exp-G, Table VIII's 3 layers, Table IX's 16 heads and Table X's 8
slots).

A row's `acp` setting: `preset` ("basic" | "xl", Table II), `overrides` (`acp.model.ACPConfig` fields, e.g. Table
VII's switches), `recipe` (`acp.training.Recipe` fields, e.g. warmup_epochs=20). The training directory is
`<work>/acp/<dataset>/<variant>`, variant naming the preset and every field that differs from it, so a killed
run resumes and a finished one is only restored.

Smoke scale: the same modules and switches at toy widths (d = max(32, heads) rounded up to a multiple of the
heads, d_m = 8, FFN 2d), `SMOKE_STEPS` steps of 8 sequences with K = 64 neighbours.
"""
from __future__ import annotations

import dataclasses
import math

from acp import model as acp_model
from acp import training as acp_training
from engine import distribute
from engine.train_loop import LoopConfig
from experiments.runners import feature_files

SMOKE_STEPS = 8


def configuration(setting, smoke: bool):
    """(preset, ACPConfig, Recipe) of a row's `acp` setting at the run's scale."""
    preset = setting["preset"]
    config = acp_model.make_config(preset, **setting.get("overrides", {}))
    recipe = dataclasses.replace(acp_training.Recipe(), **setting.get("recipe", {}))
    if smoke:
        heads = config.num_heads
        config = config.replace(model_dim=heads * math.ceil(max(32, heads) / heads), memory_dim=8,
                                ffn_multiplier=2)
        recipe = dataclasses.replace(recipe, batch_size=8, sequences=dataclasses.replace(
            recipe.sequences, num_neighbours=64))
    return preset, config, recipe


def variant_name(preset: str, config, recipe) -> str:
    """`<preset>` plus `-field=value` for every ACPConfig and Recipe field that differs from the defaults."""
    base_config, base_recipe = acp_model.PRESETS[preset], acp_training.Recipe()
    changes = [f"{f.name}={getattr(config, f.name)}" for f in dataclasses.fields(config)
               if getattr(config, f.name) != getattr(base_config, f.name)]
    changes += [f"{f.name}={getattr(recipe, f.name)}" for f in dataclasses.fields(recipe)
                if f.name != "sequences" and getattr(recipe, f.name) != getattr(base_recipe, f.name)]
    if recipe.sequences != base_recipe.sequences:
        changes += [f"{f.name}={getattr(recipe.sequences, f.name)}" for f in dataclasses.fields(recipe.sequences)
                    if getattr(recipe.sequences, f.name) != getattr(base_recipe.sequences, f.name)]
    return "-".join([preset] + [c.replace(" ", "").replace("(", "").replace(")", "").replace(",", ":")
                                for c in changes])


def trained_model(context, spec, setting) -> tuple:
    """(keras model, its training directory) for a row's `acp` setting on `spec`'s dataset, trained if needed."""
    spec = context.data(spec)
    preset, config, recipe = configuration(setting, context.smoke)
    train_dir = context.work("acp", spec.dataset, variant_name(preset, config, recipe))
    if train_dir not in context.loaded:
        features = feature_files.train_features(context, spec)
        loop = LoopConfig(train_dir, SMOKE_STEPS if context.smoke else 0,
                          checkpoint_every=SMOKE_STEPS // 2 if context.smoke else 1000, log_every=100,
                          show_progress=bool(context.verbose))
        result = acp_training.train(features, loop, preset, config, recipe, distribute.make_strategy(context.strategy),
                                    seed=context.seed, verbose=context.verbose)
        context.loaded[train_dir] = result["model"]
    return context.loaded[train_dir], train_dir

