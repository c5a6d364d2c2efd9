"""Strict restoring of `tf.train.Checkpoint`s: every variable that should come back does, or an error names it.

`tf.train.Checkpoint.restore` alone is lenient in two ways that hide wrong models:
  - a variable that the object graph does not reach from the checkpoint's root (e.g. one of a sub-layer held in
    a plain Python list, which Keras 3 tracks for `model.weights` but TensorFlow's checkpoint graph does not
    follow) is neither saved nor restored and silently keeps its fresh random value;
  - a variable the checkpoint lacks keeps its value too, unless the caller asserts afterwards; and
    `assert_existing_objects_matched` only sees objects the graph reaches (never the first case), after the
    other variables have already been overwritten.
`restore` checks, BEFORE changing anything, that every variable of every object the `tf.train.Checkpoint` holds
(a Keras model's `weights`, an optimizer's `variables`, a step counter, sampler state) is reachable from the root
and has a value of its shape in the checkpoint; otherwise `IncompleteCheckpointError` names each such variable
(its Keras path and its checkpoint path) and the checkpoint, and no variable is touched. Every restore of the
project goes through it (`Trainer.restore` and the model loaders of both papers).
"""
from __future__ import annotations

import collections
from typing import Iterable

import tensorflow as tf
from tensorflow.core.protobuf import trackable_object_graph_pb2

OBJECT_GRAPH_KEY = "_CHECKPOINTABLE_OBJECT_GRAPH"  # where tf.train.Checkpoint stores its object graph
VARIABLE_VALUE = "VARIABLE_VALUE"  # the attribute name under which a variable's value is saved
MAX_LISTED = 30  # problems named in one error message
SAVE_COUNTER = "save_counter"  # tf.train.Checkpoint's own counter: `save` writes it, `write` does not


class IncompleteCheckpointError(ValueError):
    """A checkpoint does not cover a variable that must be restored (or that variable cannot be checkpointed)."""


def _name(item) -> str:
    return getattr(item, "path", None) or getattr(item, "name", None) or type(item).__name__


def _reachable(root) -> dict[int, str]:
    """id(object) -> its first path from `root` ("a/b/c"), for every object tf.train.Checkpoint would save."""
    paths, queue = {id(root): ""}, collections.deque([root])
    while queue:
        parent = queue.popleft()
        for name, child in tf.train.TrackableView.children(parent).items():
            if id(child) not in paths:
                paths[id(child)] = f"{paths[id(parent)]}/{name}".lstrip("/")
                queue.append(child)
    return paths


def _saved_attributes(root, graph, saved_keys) -> dict[int, dict[str, str]]:
    """id(live object) -> {attribute name: checkpoint key} that restoring `graph` would give it.

    Walks the saved object graph and the live one together, edge name by edge name, from the roots, as
    `tf.train.Checkpoint.restore` matches them: an object reached by several paths (a model's variable is also
    one of the optimizer's) is matched on any of them.
    """
    matched, seen, queue = {}, set(), collections.deque([(0, root)])
    while queue:
        node_id, live = queue.popleft()
        if (node_id, id(live)) in seen:
            continue
        seen.add((node_id, id(live)))
        node = graph.nodes[node_id]
        matched.setdefault(id(live), {}).update(
            {a.name: a.checkpoint_key for a in node.attributes if a.checkpoint_key in saved_keys})
        children = tf.train.TrackableView.children(live)
        queue.extend((edge.node_id, children[edge.local_name]) for edge in node.children
                     if edge.local_name in children)
    return matched


def check_coverage(checkpoint: tf.train.Checkpoint, prefix: str, objects: Iterable) -> int:
    """Raise IncompleteCheckpointError unless the checkpoint at `prefix` holds a value for each of `objects` where
    `checkpoint`'s object graph reaches it: variables (anything with a shape) of their shape, other savable
    objects (e.g. an `engine.state.ArrayState`) whatever they saved. Returns how many were checked."""
    objects = list(objects)
    paths = _reachable(checkpoint)
    unreachable = [_name(o) for o in objects if id(o) not in paths]
    if unreachable:
        raise IncompleteCheckpointError(
            f"{len(unreachable)} variable(s) are not reachable from the checkpoint's object graph, so "
            f"tf.train.Checkpoint can neither save nor restore them (held in a plain list or dict?): "
            + ", ".join(unreachable))
    try:
        reader = tf.train.load_checkpoint(prefix)
        graph = trackable_object_graph_pb2.TrackableObjectGraph.FromString(reader.get_tensor(OBJECT_GRAPH_KEY))
    except (ValueError, tf.errors.OpError) as err:
        raise IncompleteCheckpointError(f"{prefix} is not a readable object-based checkpoint: {err}") from None
    shapes = reader.get_variable_to_shape_map()
    matched = _saved_attributes(checkpoint, graph, shapes)
    problems = []
    for item in objects:
        saved = matched.get(id(item), {})
        where = f"{_name(item)} (checkpoint path {paths[id(item)]})"
        if not saved or (hasattr(item, "shape") and VARIABLE_VALUE not in saved):
            problems.append(f"missing {where}")
        elif hasattr(item, "shape") and tuple(shapes[saved[VARIABLE_VALUE]]) != tuple(item.shape):
            problems.append(f"wrong shape {where}: checkpoint {list(shapes[saved[VARIABLE_VALUE]])}, "
                            f"model {list(item.shape)}")
    if problems:
        listed = problems[:MAX_LISTED] + ([f"... and {len(problems) - MAX_LISTED} more"]
                                          if len(problems) > MAX_LISTED else [])
        raise IncompleteCheckpointError(f"checkpoint {prefix} does not cover {len(problems)} of the "
                                        f"{len(objects)} variables to restore:\n  " + "\n  ".join(listed))
    return len(objects)


def random_states(model) -> list:
    """The variables of `model` outside `model.weights`: the states of the Keras `SeedGenerator`s its random layers
    (dropout) draw from. Training advances them at every step; `tf.train.Checkpoint` does not reach them through
    the layers, so a resumed run would repeat the first run's dropout masks unless they are checkpointed as a
    list of their own (`Trainer` does)."""
    weights = {id(w) for w in model.weights}
    return [v for v in model.variables if id(v) not in weights]


def to_restore(checkpoint: tf.train.Checkpoint) -> list:
    """Everything `checkpoint` must restore: the weights of its Keras models and layers, the variables of its
    optimizers (and other objects with `variables`), its variables and lists of variables, and its other objects
    (e.g. an ArrayState); not the save counter `tf.train.Checkpoint` adds itself."""
    objects = []
    for name, item in tf.train.TrackableView.children(checkpoint).items():
        if name == SAVE_COUNTER:
            continue
        if isinstance(item, (list, tuple)):
            objects.extend(item)
        elif hasattr(item, "weights"):
            objects.extend(item.weights)
        elif hasattr(item, "variables"):
            objects.extend(item.variables)
        else:
            objects.append(item)
    return objects


def restore(checkpoint: tf.train.Checkpoint, prefix: str) -> int:
    """Restore `checkpoint` from `prefix`, strictly: every object of `to_restore(checkpoint)` gets its saved value,
    or IncompleteCheckpointError names each that would not, before any variable changes.

    Values in the checkpoint that `checkpoint` has no object for (an optimizer when only the model is restored)
    are ignored. Returns the number of objects checked (e.g. `len(model.weights)` for a model alone).
    """
    checked = check_coverage(checkpoint, prefix, to_restore(checkpoint))
    checkpoint.restore(prefix).expect_partial()
    return checked
