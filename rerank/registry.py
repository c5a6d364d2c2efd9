"""The re-ranker registry: every method `acp-rerank --method`, the experiment runners and the demo can run, by name,
behind one interface.

A method is a `Reranker`: a name, `run(query, gallery, params, model, metric, verbose) -> RerankedDistances` on the
query and gallery rows of a feature file (any objects with the `features.feature_file.FeatureSet` fields the method
reads: `embedding`, `pid`, and `f3` / `f4` / `f5` for ACP's multi-block fusion), every parameter with its default,
and the facts `rerank.runner` needs to set the paper's neighbourhoods (ACP Table IV sets each method's
first-order neighbourhood to N/C, `rerank.neighbourhood`).

The classic re-rankers (`rerank.METHODS`) and the original ranking (`none`, alias `baseline`) register when
`rerank` is imported. ACP registers itself through the same `register` when `acp.acp_rerank` is imported; `rerank`
knows it only by that module's name (`register_module`), so `get("acp")` imports it on first use and importing
`rerank` loads neither `acp` nor TensorFlow. Your own method:

    import rerank
    from rerank import registry

    def mine(query, gallery, params, model=None, metric="cosine", verbose=0):
        return rerank.RerankedDistances(query.embedding * params["scale"], gallery.embedding, metric)

    registry.register(registry.Reranker("mine", mine, defaults={"scale": 1.0}, uses_metric=True))
    # acp-rerank --method=mine --param=scale=2 ... (from a program that imported the module above)

or, from a module `mypackage.mine` that does the `register` above when imported, `register_module("mine",
"mypackage.mine")`: the module is imported when the method is first asked for.
"""
from __future__ import annotations

import dataclasses
import importlib
import inspect
from typing import Callable, Mapping

# The arguments of a classic re-ranker function that are not its parameters (inputs and progress display).
_NOT_PARAMETERS = ("query", "gallery", "verbose")


@dataclasses.dataclass(frozen=True)
class Reranker:
    """One re-ranking method.

    Attributes:
      name: what `--method` and `evaluate_method` call it.
      run: `run(query, gallery, params, model=None, metric="cosine", verbose=0) -> RerankedDistances`; `params`
        holds every parameter of `defaults`, resolved (no None left where `first_order` derives it).
      defaults: every parameter with its default; None for one derived from N/C of the gallery (`first_order`).
      first_order: the parameters that set the method's first-order neighbourhood (Table IV sets them to N/C).
      unchanged_at_one: the parameter whose value 1 (the image alone) returns the original ranking, if any.
      k2_within_k1: k2 counts some of the k1 neighbours (message passing, refinement), so a k2 above k1 is lowered.
      checks_given_k2: the method itself rejects a GIVEN k2 above a given k1, naming both (so it is not lowered).
      needs_model: `run` needs a trained model (e.g. ACP's).
      uses_metric: the method's distances depend on `metric` (it is then reported among its parameters).
    """

    name: str
    run: Callable
    defaults: Mapping[str, object] = dataclasses.field(default_factory=dict)
    first_order: tuple[str, ...] = ()
    unchanged_at_one: str | None = None
    k2_within_k1: bool = False
    checks_given_k2: bool = False
    needs_model: bool = False
    uses_metric: bool = False

    def __post_init__(self):
        if not self.name or not self.name.replace("_", "").isalnum():
            raise ValueError(f"a re-ranker name must be letters, digits and underscores, got {self.name!r}")
        if not callable(self.run):
            raise ValueError(f"re-ranker {self.name!r}: run must be callable, got {self.run!r}")
        object.__setattr__(self, "defaults", dict(self.defaults))
        unknown = [p for p in (*self.first_order, self.unchanged_at_one) if p is not None and p not in self.defaults]
        if unknown:
            raise ValueError(f"re-ranker {self.name!r}: {unknown} are not among its parameters {list(self.defaults)}")
        if self.k2_within_k1 and not {"k1", "k2"} <= set(self.defaults):
            raise ValueError(f"re-ranker {self.name!r}: k2_within_k1 needs parameters k1 and k2")


def from_function(name: str, function: Callable, **facts) -> Reranker:
    """A `Reranker` of a classic re-ranker `function(query_embeddings, gallery_embeddings, **params, verbose=0)`;
    its parameters and defaults are the function's keyword arguments. `facts`: the other `Reranker` fields."""
    defaults = {parameter.name: parameter.default for parameter in inspect.signature(function).parameters.values()
                if parameter.name not in _NOT_PARAMETERS}

    def run(query, gallery, params, model=None, metric="cosine", verbose=0):
        del model, metric  # the classic methods search neighbours with their own metric
        return function(query.embedding, gallery.embedding, verbose=verbose, **params)

    return Reranker(name, run, defaults, **facts)


_REGISTRY: dict[str, Reranker] = {}
# Methods known by the module that registers them when imported, not imported yet: name -> module.
_MODULES: dict[str, str] = {}


def register(reranker: Reranker, replace: bool = False) -> Reranker:
    """Make `reranker` runnable by its name; a name already taken is an error unless `replace`.

    A name known through `register_module` is taken by the `Reranker` whose `run` that module defines (the module
    registering itself, whoever imported it); any other needs `replace`.
    """
    if not isinstance(reranker, Reranker):
        raise TypeError(f"register takes a rerank.registry.Reranker, got {type(reranker).__name__}")
    if reranker.name in _REGISTRY and not replace and _REGISTRY[reranker.name] is not reranker:
        raise ValueError(f"a re-ranker named {reranker.name!r} is already registered; pass replace=True to "
                         "replace it")
    module = _MODULES.get(reranker.name)
    if module is not None and not replace and reranker.run.__module__ != module:
        raise ValueError(f"a re-ranker named {reranker.name!r} is already registered (by module {module}, imported "
                         "on first use); pass replace=True to replace it")
    _MODULES.pop(reranker.name, None)
    _REGISTRY[reranker.name] = reranker
    return reranker


def register_module(name: str, module: str) -> None:
    """Know the method `name` by `module`, which registers it when imported: `get(name)` imports it on first use.

    So a method whose module is heavy (ACP's loads TensorFlow) is listed by `names()` without loading it, and the
    package here need not import the one above it.
    """
    if name in _REGISTRY or _MODULES.get(name, module) != module:
        raise ValueError(f"a re-ranker named {name!r} is already registered")
    _MODULES[name] = module


def unregister(name: str) -> None:
    """Remove the method `name` (e.g. a test's), or forget the module known for it; unknown names are an error."""
    if name not in _REGISTRY and name not in _MODULES:
        get(name)
    _REGISTRY.pop(name, None)
    _MODULES.pop(name, None)


def get(name: str) -> Reranker:
    """The method registered as `name` (importing its module first if it is known by module); a ValueError names
    the registered ones otherwise."""
    if name not in _REGISTRY and name in _MODULES:
        module = _MODULES[name]
        importlib.import_module(module)
        if name not in _REGISTRY:
            raise ValueError(f"module {module} was imported for re-ranking method {name!r} but registered no "
                             "method of that name")
    if name not in _REGISTRY:
        raise ValueError(f"unknown re-ranking method {name!r}; registered: {list(names())}")
    return _REGISTRY[name]


def names() -> tuple[str, ...]:
    """Registered method names, in registration order, then those known by module and not imported yet."""
    return tuple(_REGISTRY) + tuple(name for name in _MODULES if name not in _REGISTRY)
