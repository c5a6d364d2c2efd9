"""Run in a child process by tests/test_binaries.py (one TensorFlow import for every console script):

    python tests/binaries_child.py imports <order: forward|reverse>   -> JSON {module: [flags it added to absl.FLAGS]}
    python tests/binaries_child.py scripts <order>                    -> JSON {script: {help, code, flags, defaults}}
    python tests/binaries_child.py errors CASES.json                  -> JSON [{code, stderr}] per [script, *args]
"""
import ast
import contextlib
import importlib
import io
import json
import os
import pkgutil
import sys
import traceback

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)
# Every package of ours, benchmarks/ included: a benchmark is a binary, but like every binary it keeps its flags in
# its own FlagValues, so importing it (or several side by side) declares nothing in absl's global FLAGS.
PACKAGES = ("data", "engine", "features", "rerank", "kvmmn", "acp", "experiments", "benchmarks")


def console_scripts() -> dict[str, str]:
    """{script name: "module:function"} from setup.py's CONSOLE_SCRIPTS (what pip installs)."""
    tree = ast.parse(open(os.path.join(REPO, "setup.py")).read())
    for node in tree.body:
        if isinstance(node, ast.Assign) and getattr(node.targets[0], "id", "") == "CONSOLE_SCRIPTS":
            return dict((part.strip() for part in line.split("=")) for line in ast.literal_eval(node.value))
    raise AssertionError("setup.py has no CONSOLE_SCRIPTS")


def library_modules() -> list[str]:
    names = []
    for package in PACKAGES:
        module = importlib.import_module(package)
        names.append(package)
        names += [info.name for info in pkgutil.walk_packages(module.__path__, package + ".")]
    return names


def flags_added(order: str) -> dict:
    import keras  # noqa: F401  (TensorFlow and Keras declare absl flags of their own when they load)
    from absl import app, flags, logging  # noqa: F401  (and so does absl)

    start = set(flags.FLAGS)  # finding the modules already imports every package
    modules = library_modules()
    added = {"(importing the packages)": sorted(set(flags.FLAGS) - start)}
    for name in modules if order == "forward" else modules[::-1]:
        before = set(flags.FLAGS)
        try:
            importlib.import_module(name)
        except ImportError as error:  # an optional dependency (matplotlib ...): nothing declared either way
            added[name] = [f"ImportError: {error}"] if "No module named" not in str(error) else []
            continue
        added[name] = sorted(set(flags.FLAGS) - before)
    return added


def call(target: str, argv: list[str]) -> tuple[int, str, str]:
    module, function = target.split(":")
    entry = getattr(importlib.import_module(module), function)
    out, err = io.StringIO(), io.StringIO()
    saved, code = sys.argv, 0
    sys.argv = argv
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            entry()
    except SystemExit as done:
        code = done.code if isinstance(done.code, int) else (0 if done.code is None else 1)
    except Exception:  # not a user error: the traceback a person would see
        code = 1
        err.write(traceback.format_exc())
    finally:
        sys.argv = saved
    return code, out.getvalue(), err.getvalue()


def scripts(order: str) -> dict:
    from engine import cli

    items = list(console_scripts().items())
    result = {}
    for name, target in items if order == "forward" else items[::-1]:
        module = importlib.import_module(target.split(":")[0])
        own = getattr(module, "FLAGS", None)
        own = cli.own_flags(own) if own is not None and own is not __import__("absl").flags.FLAGS else {}
        result[name] = {"flags": sorted(own), "defaults": {n: repr(f.default) for n, f in own.items()},
                        "doc": (module.__doc__ or "").strip().split("\n")[0], "unchecked":
                        cli.unchecked_numeric_flags(module.FLAGS) if own else []}
    for name, target in items:
        code, out, _ = call(target, [name, "--help"])
        result[name].update(code=code, help=out)
    return result


def errors(path: str) -> list:
    targets = console_scripts()
    return [dict(zip(("code", "stdout", "stderr"), call(targets[case[0]], case))) for case in json.load(open(path))]


if __name__ == "__main__":
    command, argument = sys.argv[1:3]
    result = {"imports": flags_added, "scripts": scripts, "errors": errors}[command](argument)
    print("RESULT" + json.dumps(result))
