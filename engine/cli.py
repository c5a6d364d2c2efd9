"""What every binary (`<package>/cli/<name>.py`) is made of: its own flags, derived from the config dataclasses,
one typed NAME=VALUE parser, shared flag sets as functions, and `run(main, FLAGS, __doc__)`, which gives a
`--help` that lists the binary's own flags, user errors as one line, and quiet TensorFlow start-up.

    from engine import cli
    FLAGS = cli.new_flags()                                   # this binary's flags only, never absl's global FLAGS
    cli.define_loop_flags(FLAGS, max_steps=250_000)           # shared flag sets are functions
    cli.define_dataset_flags(FLAGS)
    RECIPE = cli.define_config_flags(FLAGS, Recipe, checks={"learning_rate": cli.Check(min=0, min_open=True)})

    def main(argv):
        recipe = RECIPE.build()                               # the dataclass, with the flags' values

    def run():                                                # the console-script entry point
        cli.run(main, FLAGS, __doc__)

Each binary holds its flags in its own `absl.flags.FlagValues`: libraries declare none, binaries can be imported
side by side (tests do), a flag's default never depends on what else was imported, and `--help` shows exactly the
binary's flags (absl's own --help lists the flags of the module named by sys.argv[0], which for a console script
is the wrapper: nothing).

User errors -- `UserError`, `absl.app.UsageError`, flag errors, `ValueError` (the project's DatasetError,
FeatureFileError, OwnershipError ... subclass it) and missing or misplaced files -- print `error: <one line>` on
stderr and exit with status 2; `--debug` shows the traceback instead. Every float flag must be finite; range
checks come from `Check` (or absl's bounds), applied when the command line is parsed, before any work.
"""
from __future__ import annotations

import ast
import contextlib
import dataclasses
import inspect
import math
import os
import re
import sys
import tempfile
import textwrap
import types
import typing
from typing import Any, Callable, Iterable, Mapping

from absl import app, flags

EXIT_USER_ERROR = 2


class UserError(ValueError):
    """Something the person running the binary can fix (a flag, a file, a dataset); `run` prints it as one line."""


USER_ERRORS = (UserError, app.UsageError, flags.Error, ValueError, FileNotFoundError, FileExistsError,
               IsADirectoryError, NotADirectoryError, PermissionError)


# ------------------------------------------------------------------------------------------ TensorFlow start-up
@contextlib.contextmanager
def _stderr_captured():
    """Route file descriptor 2 (where TensorFlow's C++ logging writes, below Python) to a temporary file; yields
    a function returning what was written."""
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as sink:
        os.dup2(sink.fileno(), 2)
        try:
            yield lambda: (sink.seek(0), sink.read().decode("utf-8", "replace"))[1]
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)


def quiet_tensorflow(argv: Iterable[str] | None = None) -> None:
    """Load TensorFlow without its C++ start-up noise (oneDNN, CPU-feature and CUDA-driver lines, the cuInit error
    of a machine without GPU), unless `--verbose_tf` is among `argv` (default sys.argv) or it is already loaded.

    Called by each `<package>/cli/__init__.py`, so it runs before a binary's module imports any library. Those lines
    are written to file descriptor 2 before TensorFlow reads TF_CPP_MIN_LOG_LEVEL, so they are captured during the
    import and the first device query, and shown only if the import fails. TF_CPP_MIN_LOG_LEVEL=2 (unless set)
    keeps later INFO and WARNING lines of the C++ runtime out as well; errors still show.
    """
    argv = sys.argv if argv is None else list(argv)
    if "--verbose_tf" in argv or "tensorflow" in sys.modules:
        return
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    with _stderr_captured() as captured:
        try:
            import tensorflow as tf

            tf.config.list_physical_devices("GPU")  # the CUDA probe happens here, not at import
        except BaseException:
            noise = captured()
            raise RuntimeError(f"TensorFlow failed to load; its output:\n{noise}") from None
    import logging

    logging.getLogger("tensorflow").setLevel(logging.WARNING)


# ---------------------------------------------------------------------------------------------- typed values
@dataclasses.dataclass(frozen=True)
class Check:
    """What a numeric setting may be: [min, max] (`min_open` / `max_open`: strict), finite (floats, default), and
    for sequences the number of elements. Applied to each element of a tuple."""

    min: float | None = None
    max: float | None = None
    min_open: bool = False
    max_open: bool = False
    finite: bool = True
    length: int | None = None
    min_length: int = 0

    def problem(self, value) -> str | None:
        """Why `value` breaks this check (None when it does not)."""
        if isinstance(value, (tuple, list)):
            if self.length is not None and len(value) != self.length:
                return f"expected {self.length} values, got {len(value)}"
            if len(value) < self.min_length:
                return f"expected at least {self.min_length} value(s), got {len(value)}"
            return next((problem for problem in map(self.problem, value) if problem), None)
        if value is None or isinstance(value, (str, bool)):
            return None
        if self.finite and isinstance(value, float) and not math.isfinite(value):
            return "must be a finite number"
        if self.min is not None and (value <= self.min if self.min_open else value < self.min):
            return f"must be {'>' if self.min_open else '>='} {self.min:g}"
        if self.max is not None and (value >= self.max if self.max_open else value > self.max):
            return f"must be {'<' if self.max_open else '<='} {self.max:g}"
        return None

    def describe(self) -> str:
        parts = []
        if self.min is not None:
            parts.append(f"{'>' if self.min_open else '>='} {self.min:g}")
        if self.max is not None:
            parts.append(f"{'<' if self.max_open else '<='} {self.max:g}")
        return " and ".join(parts)


POSITIVE = Check(min=0, min_open=True)
NON_NEGATIVE = Check(min=0)
AT_LEAST_ONE = Check(min=1)
FRACTION = Check(min=0, max=1)
ANY = Check()  # finite, nothing else

_TRUE, _FALSE = ("true", "1", "yes", "on"), ("false", "0", "no", "off")


def _unwrap_optional(kind):
    """(inner type, whether None is allowed) of `X | None` / Optional[X]."""
    args = typing.get_args(kind)
    if typing.get_origin(kind) in (typing.Union, types.UnionType) and type(None) in args:
        rest = [a for a in args if a is not type(None)]
        return (rest[0] if len(rest) == 1 else typing.Union[tuple(rest)]), True
    return kind, False


def _tuple_elements(kind):
    """(element type, fixed length or None) when `kind` is a tuple type, else None."""
    if typing.get_origin(kind) is not tuple:
        return None
    args = typing.get_args(kind)
    if len(args) == 2 and args[1] is Ellipsis:
        return args[0], None
    if args and all(a == args[0] for a in args):
        return args[0], len(args)
    return None


def describe_type(kind) -> str:
    kind, optional = _unwrap_optional(kind)
    elements = _tuple_elements(kind)
    if elements:
        name = f"comma list of {elements[1] or ''} {describe_type(elements[0])}".replace("  ", " ")
    elif typing.get_origin(kind) is typing.Literal:
        name = "one of " + ", ".join(map(str, typing.get_args(kind)))
    else:
        name = getattr(kind, "__name__", str(kind))
    return name + (" or none" if optional else "")


def parse_value(text: str, kind) -> Any:
    """`text` as a value of type `kind`: bool (true/false/1/0/yes/no), int, float, str, `X | None` ("none"),
    Literal[...], tuples (comma- or colon-separated). `kind` None infers: int, then float, then true/false, then a
    Python literal, else the string. ValueError says what was expected."""
    text = text.strip()
    if kind is None:
        for parse in (int, float):
            try:
                return parse(text)
            except ValueError:
                pass
        if text.lower() in _TRUE + _FALSE:
            return text.lower() in _TRUE
        try:
            return ast.literal_eval(text)
        except (ValueError, SyntaxError):
            return text
    kind, optional = _unwrap_optional(kind)
    if optional and text.lower() in ("none", ""):
        return None
    elements = _tuple_elements(kind)
    if elements:
        items = [item for item in re.split(r"[,:]", text) if item.strip()] if text else []
        values = tuple(parse_value(item, elements[0]) for item in items)
        if elements[1] is not None and len(values) != elements[1]:
            raise ValueError(f"expected {elements[1]} comma-separated values, got {len(values)}")
        return values
    if typing.get_origin(kind) is typing.Literal:
        choices = typing.get_args(kind)
        if text not in map(str, choices):
            raise ValueError(f"expected one of {', '.join(map(str, choices))}, got {text!r}")
        return next(c for c in choices if str(c) == text)
    if kind is bool:
        if text.lower() not in _TRUE + _FALSE:
            raise ValueError(f"expected true or false, got {text!r}")
        return text.lower() in _TRUE
    if kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            raise ValueError(f"expected {'an integer' if kind is int else 'a number'}, got {text!r}") from None
    if kind is str:
        return text
    raise ValueError(f"a {describe_type(kind)} cannot be given on the command line")


def parse_assignments(items: Iterable[str], kinds: Mapping[str, Any] | type, what: str,
                      checks: Mapping[str, Check] | None = None, allow_unknown: bool = False) -> dict:
    """NAME=VALUE strings -> {name: typed value}: the one parser of every repeatable NAME=VALUE flag
    (`--override` of ACP configs, `--dataset_option`, `--param` of re-rankers).

    `kinds` maps names to types (None: inferred, see `parse_value`) or is a dataclass (its fields). Unknown names
    are an error listing the known ones unless `allow_unknown` (their values are inferred). `checks` apply per name;
    floats must be finite. Errors are UserErrors naming `what` (the flag) and the item.
    """
    if dataclasses.is_dataclass(kinds):
        kinds = config_field_types(kinds)
    checks = checks or {}
    values = {}
    for item in items:
        name, sep, text = item.partition("=")
        name = name.strip()
        if not sep or not name:
            raise UserError(f"{what}={item!r}: expected NAME=VALUE")
        if name not in kinds and not allow_unknown:
            raise UserError(f"{what}={item!r}: unknown name {name!r}; known: {', '.join(sorted(kinds)) or 'none'}")
        try:
            value = parse_value(text, kinds.get(name))
        except ValueError as error:
            raise UserError(f"{what}={item!r}: {error}") from None
        problem = checks.get(name, ANY).problem(value)
        if problem:
            raise UserError(f"{what}={item!r}: {problem}")
        values[name] = value
    return values


def config_field_types(cls) -> dict[str, Any]:
    """{field name: resolved type} of dataclass `cls` (string annotations resolved in its module)."""
    hints = typing.get_type_hints(cls)
    return {field.name: hints[field.name] for field in dataclasses.fields(cls)}


def docstring_help(cls) -> dict[str, str]:
    """Per-field help from a dataclass docstring written as a table, "name: text" (several per line allowed):
    each field's text runs to the next field's label or the end of its paragraph."""
    doc = inspect.cleandoc(cls.__doc__ or "")
    names = [field.name for field in dataclasses.fields(cls)]
    if not names or not doc or doc.startswith(f"{cls.__name__}("):  # dataclass's own signature docstring
        return {}
    name = "(?:" + "|".join(map(re.escape, names)) + r")(?: \([^)]*\))?"  # a name, maybe with "(symbol)"
    labels = list(re.finditer(r"(?<![\w.`])(" + name + r"(?:, " + name + r")*): ", doc))
    result = {}
    for label, following in zip(labels, labels[1:] + [None]):
        end = following.start() if following else len(doc)
        text = " ".join(doc[label.end():end].split("\n\n")[0].split())
        for member in label.group(1).split(", "):  # "height, width: image size" documents both
            result.setdefault(member.split(" (")[0], text)
    return result


# ------------------------------------------------------------------------------------------------ flag values
def new_flags() -> flags.FlagValues:
    """A binary's own FlagValues, with the flags `run` handles: --debug and --verbose_tf (--flagfile=FILE is
    absl's, built into FlagValues)."""
    fv = flags.FlagValues()
    flags.DEFINE_bool("debug", False, "On an error, show the traceback instead of one line.", flag_values=fv)
    flags.DEFINE_bool("verbose_tf", False, "Show TensorFlow's start-up messages (C++ logging).", flag_values=fv)
    return fv


class CommaTuple(tuple):
    """A tuple flag value that prints as it is typed ("224,112"), so flag errors quote the command line."""

    def __str__(self):
        return ",".join(map(str, self))


class _TupleParser(flags.ArgumentParser):
    """Comma-separated values of one type ("224,112") as a tuple; a tuple or list default is kept as it is."""

    def __init__(self, element, length=None):
        self.element, self.length = element, length

    def parse(self, argument):
        if isinstance(argument, (tuple, list)):
            return CommaTuple(argument)
        return CommaTuple(parse_value(argument, tuple[self.element, ...] if self.length is None
                                      else tuple[(self.element,) * self.length]))

    def flag_type(self):
        return f"comma list of {describe_type(self.element)}"


class _CsvSerializer(flags.ArgumentSerializer):
    def serialize(self, value):
        return ",".join(str(v) for v in value)


def check(fv: flags.FlagValues, name: str, rule: Check) -> None:
    """Validate flag `name` with `rule` whenever it is parsed or set (an IllegalFlagValueError naming it)."""

    def checker(value):
        problem = rule.problem(value)
        if problem:
            raise flags.ValidationError(problem)
        return True

    flags.register_validator(name, checker, flag_values=fv)
    fv[name].range_check = rule  # seen by `unchecked_numeric_flags` and the help text


def validate(fv: flags.FlagValues, name: str, parse: Callable[[Any], Any]) -> None:
    """Check flag `name` at parse time with `parse(value)`, whose ValueError becomes a flag error naming it."""

    def checker(value):
        try:
            parse(value)
        except ValueError as error:
            raise flags.ValidationError(str(error)) from None
        return True

    flags.register_validator(name, checker, flag_values=fv)
    fv[name].validated = True  # its own check counts as a range for `unchecked_numeric_flags`


def _is_numeric_flag(flag) -> bool:
    return isinstance(flag.parser, (flags.IntegerParser, flags.FloatParser)) or (
        isinstance(flag.parser, _TupleParser) and flag.parser.element in (int, float))


def unchecked_numeric_flags(fv: flags.FlagValues) -> list[str]:
    """Numeric flags of `fv` without a range: neither absl bounds nor a `Check` (the tests require none)."""
    missing = []
    for name, flag in own_flags(fv).items():
        if (not _is_numeric_flag(flag) or getattr(flag, "range_check", None) is not None
                or hasattr(flag, "alias_of") or getattr(flag, "validated", False)):
            continue  # an alias is checked as the flag it stands for
        if getattr(flag.parser, "lower_bound", None) is None and getattr(flag.parser, "upper_bound", None) is None:
            missing.append(name)
    return missing


def define(fv: flags.FlagValues, name: str, kind, default, help_text: str, rule: Check | None = None,
           choices: Iterable | None = None) -> None:
    """Declare flag --name of type `kind` (bool, int, float, str, X | None, tuples as comma lists) in `fv`, with
    `rule` checked at parse time (floats are checked finite even without one) and `choices` for strings."""
    inner, _ = _unwrap_optional(kind)
    elements = _tuple_elements(inner)
    if typing.get_origin(inner) is typing.Literal:
        choices, inner = [str(c) for c in typing.get_args(inner)], str
    if elements:
        flags.DEFINE(_TupleParser(*elements), name, default, help_text, flag_values=fv, serializer=_CsvSerializer())
    elif inner is bool:
        flags.DEFINE_bool(name, default, help_text, flag_values=fv)
    elif inner is int:
        flags.DEFINE_integer(name, default, help_text, flag_values=fv)
    elif inner is float:
        flags.DEFINE_float(name, default, help_text, flag_values=fv)
    elif inner is str and choices is not None:
        flags.DEFINE_enum(name, default, list(choices), help_text, flag_values=fv)
    elif inner is str:
        flags.DEFINE_string(name, default, help_text, flag_values=fv)
    else:
        raise TypeError(f"flag --{name}: type {kind} cannot be a flag")
    if rule is None and (inner is float or (elements and elements[0] is float)):
        rule = ANY
    if rule is not None:
        check(fv, name, rule)


@dataclasses.dataclass
class ConfigFlags:
    """The flags `define_config_flags` derived from a dataclass: `values()` -> {field: flag value},
    `build(**fields)` -> the dataclass with the flags' values (`fields` add or replace)."""

    fv: flags.FlagValues
    cls: type
    flag_names: dict[str, str]  # field -> flag

    def values(self) -> dict:
        return {field: self.fv[flag].value for field, flag in self.flag_names.items()}

    def build(self, **fields):
        return self.cls(**{**self.values(), **fields})


def define_config_flags(fv: flags.FlagValues, cls, *, only: Iterable[str] | None = None, exclude: Iterable[str] = (),
                        defaults: Mapping[str, Any] | None = None, help: Mapping[str, str] | None = None,
                        checks: Mapping[str, Check] | None = None, names: Mapping[str, str] | None = None,
                        choices: Mapping[str, Iterable] | None = None) -> ConfigFlags:
    """One flag per field of dataclass `cls`: the dataclass is the single source of each setting's name, type and
    default (`defaults` may replace one, e.g. a binary's own max_steps).

    Help text: `help[field]`, else the field's metadata "help", else the class docstring's table ("name: text",
    `docstring_help`); a field without any is an error here, at the binary's import. Range: `checks[field]` or the
    field's metadata "check" (a `Check`); floats are always checked finite. `names` renames flags (field -> flag),
    `choices` restricts string fields (or metadata "choices").
    """
    defaults, help, checks, names, choices = (dict(x or {}) for x in (defaults, help, checks, names, choices))
    types, table = config_field_types(cls), docstring_help(cls)
    wanted = set(only) if only is not None else None
    flag_names = {}
    for field in dataclasses.fields(cls):
        if field.name in exclude or (wanted is not None and field.name not in wanted):
            continue
        if field.name in defaults:
            default = defaults[field.name]
        elif field.default is not dataclasses.MISSING:
            default = field.default
        elif field.default_factory is not dataclasses.MISSING:
            default = field.default_factory()
        else:
            default = None  # required: the binary checks it is given
        text = help.get(field.name) or field.metadata.get("help") or table.get(field.name)
        if not text:
            raise TypeError(f"{cls.__name__}.{field.name} has no help text for its flag")
        flag = names.get(field.name, field.name)
        define(fv, flag, types[field.name], default, text, checks.get(field.name, field.metadata.get("check")),
               choices.get(field.name, field.metadata.get("choices")))
        flag_names[field.name] = flag
    unknown = (set(defaults) | set(help) | set(checks) | set(names) | (wanted or set())) - set(flag_names)
    if unknown:
        raise TypeError(f"define_config_flags({cls.__name__}): no such field(s) {sorted(unknown)}")
    return ConfigFlags(fv, cls, flag_names)


_DEPRECATED = "deprecated spelling of --"


def deprecated_alias(fv: flags.FlagValues, old: str, new: str) -> None:
    """Accept --old as the deprecated spelling of --new for one release (a warning names the new one); `run`
    copies its value over (giving both is an error)."""
    flag = fv[new]
    flags.DEFINE(flag.parser, old, None, f"{_DEPRECATED}{new}", flag_values=fv, serializer=flag.serializer,
                 boolean=flag.boolean)
    fv[old].alias_of = new


def _apply_aliases(fv: flags.FlagValues) -> list[str]:
    warnings = []
    for name, flag in own_flags(fv).items():
        new = getattr(flag, "alias_of", None)
        if new is None or not flag.present:
            continue
        if fv[new].present:
            raise UserError(f"--{name} and --{new} are the same flag ({name} is its deprecated spelling): give one")
        setattr(fv, new, flag.value)  # runs --new's validators
        warnings.append(f"warning: --{name} is deprecated; use --{new}")
    return warnings


def own_flags(fv: flags.FlagValues) -> dict:
    """{name: flag} of the flags declared in `fv` (short names and aliases appear once)."""
    return {name: flag for name, flag in fv._flags().items() if name == flag.name}


def parse(fv: flags.FlagValues, argv: list[str]) -> list[str]:
    """Parse `argv` (program name first) into `fv` from a clean state (a test may parse several times); returns
    the remaining arguments. Deprecated spellings are applied (their warnings printed on stderr); any float flag
    that is not finite is an error."""
    fv.unparse_flags()
    remaining = fv(list(argv))
    for line in _apply_aliases(fv):
        print(line, file=sys.stderr)
    for name, flag in own_flags(fv).items():
        values = flag.value if isinstance(flag.value, (tuple, list)) else [flag.value]
        if any(isinstance(v, float) and not math.isfinite(v) for v in values):
            raise flags.IllegalFlagValueError(f"flag --{name}={flag.value}: must be a finite number")
    return remaining


# ---------------------------------------------------------------------------------------------------- --help
def _format_default(flag) -> str:
    value = flag.default
    if value is None:
        return "none"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (tuple, list)):
        return ",".join(map(str, value)) or "empty"
    return repr(value) if value == "" else str(value)


def help_text(fv: flags.FlagValues, doc: str | None, program: str) -> str:
    """The text of `--help`: the binary's description (the first paragraph of its docstring), then each of its
    flags with help, type, default and range; deprecated spellings last."""
    description = inspect.cleandoc(doc or "").split("\n\n")[0]
    lines = [f"usage: {program} [--flag=value ...] [--flagfile=FILE]", "", description, "", "flags:"]
    own = own_flags(fv)
    deprecated = []
    for name in sorted(own, key=lambda n: (n in ("debug", "verbose_tf"), n)):
        flag = own[name]
        replaced_by = getattr(flag, "alias_of", None) or getattr(flag, "deprecated_for", None)
        if replaced_by:  # deprecated_for: an old flag the binary maps onto a new one itself
            deprecated.append(f"  --{name}: deprecated spelling of --{replaced_by}")
            continue
        dynamic = getattr(flag, "dynamic_help", None)
        text = dynamic() if dynamic else flag.help.split(";\n    repeat this option")[0]  # absl's suffix
        facts = [f"default: {_format_default(flag)}"]
        rule = getattr(flag, "range_check", None)
        bounds = rule.describe() if rule else " and ".join(
            f"{op} {bound}" for op, bound in ((">=", getattr(flag.parser, "lower_bound", None)),
                                                ("<=", getattr(flag.parser, "upper_bound", None))) if bound is not None)
        if bounds:
            facts.append(bounds)
        if isinstance(flag, flags.MultiFlag):
            facts.append("repeatable")
        lines.append(f"  --{name}" + (f" (one of {', '.join(flag.parser.enum_values)})"
                                      if isinstance(flag.parser, flags.EnumParser) else ""))
        lines.extend(textwrap.wrap(f"{text} [{'; '.join(facts)}]", 100, initial_indent="      ",
                                   subsequent_indent="      "))
    if deprecated:
        lines += ["", "deprecated spellings (accepted for one release):", *deprecated]
    return "\n".join(lines)


# ----------------------------------------------------------------------------------------------- run a binary
def error_line(error: BaseException) -> str:
    """One line for a user error: its message with line breaks joined, a file error as "<reason>: <path>"."""
    if isinstance(error, OSError) and error.filename is not None:
        message = f"{error.strerror or type(error).__name__}: {error.filename}"
    else:
        message = str(error) or type(error).__name__
    return "error: " + "; ".join(part.strip() for part in message.splitlines() if part.strip())


def run(main: Callable[[list[str]], int | None], fv: flags.FlagValues, doc: str | None,
        argv: list[str] | None = None, user_errors: tuple[type, ...] = ()) -> None:
    """The console-script entry point of a binary: `--help` (or -h, --helpshort, --helpfull) prints `help_text`,
    flags are parsed into `fv`, `main(remaining_argv)` runs; exits with main's status. A user error (USER_ERRORS
    and `user_errors`) prints one line `error: ...` on stderr and exits with status 2 (`--debug`: the traceback)."""
    argv = list(sys.argv if argv is None else argv)
    program = os.path.basename(argv[0]) if argv else "?"
    if program.endswith(".py") or program == "-m":  # python -m pkg.cli.name: the docstring's "name:" instead
        program = inspect.cleandoc(doc or "").split(":")[0].split()[0] if doc else program
    if any(arg in ("--help", "-h", "-?", "--helpshort", "--helpfull") for arg in argv[1:]):
        try:
            print(help_text(fv, doc, program), flush=True)
        except BrokenPipeError:  # `--help | head`
            sys.stdout = None
        sys.exit(0)
    debug = "--debug" in argv[1:]
    try:
        remaining = parse(fv, argv)
        debug = fv["debug"].value
        if not flags.FLAGS.is_parsed():  # absl's own flags (logging) keep their defaults, as under app.run
            flags.FLAGS.mark_as_parsed()
        if len(remaining) > 1:
            raise app.UsageError(f"unexpected arguments: {' '.join(remaining[1:])}")
        status = main(remaining)
    except USER_ERRORS + tuple(user_errors) as error:
        if debug:
            raise
        print(error_line(error), file=sys.stderr)
        sys.exit(EXIT_USER_ERROR)
    except KeyboardInterrupt:
        if debug:
            raise
        print("interrupted", file=sys.stderr)
        sys.exit(130)
    sys.exit(status or 0)


# ------------------------------------------------------------------------------------------ shared flag sets
def define_loop_flags(fv: flags.FlagValues, **defaults) -> ConfigFlags:
    """The flags of every training binary: --strategy, --mixed_precision, --seed and `engine.train_loop.LoopConfig`'s
    fields (--train_dir, --max_steps, --checkpoint_every, --log_every, --keep_checkpoints, --xla), with this
    binary's `defaults` (keyword per flag). Returns the LoopConfig flags (`loop_config_from_flags` builds it)."""
    from engine import distribute, precision
    from engine.train_loop import LoopConfig

    own = {"strategy": "one_device", "mixed_precision": "float32", "seed": 0}
    unknown = set(defaults) - set(own) - {f.name for f in dataclasses.fields(LoopConfig)}
    if unknown:
        raise TypeError(f"define_loop_flags: unknown flag defaults {sorted(unknown)}")
    values = {**own, **defaults}
    define(fv, "strategy", str, values.pop("strategy"), "tf.distribute strategy: one_device (first GPU, else CPU), "
           "mirrored (every GPU of this machine), multi_worker (MultiWorkerMirroredStrategy over the hosts in "
           "TF_CONFIG).", choices=distribute.STRATEGIES)
    define(fv, "mixed_precision", str, values.pop("mixed_precision"), "Keras dtype policy: float32, mixed_float16 "
           "(GPUs; adds dynamic loss scaling) or mixed_bfloat16.", choices=precision.POLICIES)
    define(fv, "seed", int, values.pop("seed"), "Seed of every random generator (initialisers, samplers, "
           "augmentation, dropout).", NON_NEGATIVE)
    return define_config_flags(fv, LoopConfig, exclude=("show_progress",), defaults=values, help={
        "train_dir": "Directory of checkpoints and TensorBoard summaries; a run restarted with the same directory "
                     "resumes from its latest checkpoint.",
        "max_steps": "Number of training steps (optimizer updates).",
        "checkpoint_every": "Save a checkpoint every this many steps (and at the end).",
        "log_every": "Write TensorBoard scalars and a log line every this many steps.",
        "keep_checkpoints": "How many recent checkpoints to keep.",
        "xla": "Compile the per-replica training computation with XLA (jit_compile)."},
        checks={"max_steps": NON_NEGATIVE, "checkpoint_every": AT_LEAST_ONE, "log_every": AT_LEAST_ONE,
                "keep_checkpoints": AT_LEAST_ONE})


def setup_from_flags(fv: flags.FlagValues):
    """Build the strategy named by --strategy, seed everything with --seed, set --mixed_precision's dtype policy;
    returns the strategy. Call first in `main`: MultiWorkerMirroredStrategy must exist before other ops run."""
    from engine import distribute, precision, seed

    strategy = distribute.make_strategy(fv["strategy"].value)
    seed.set_seed(fv["seed"].value)
    precision.set_policy(fv["mixed_precision"].value)
    return strategy


def loop_config_from_flags(fv: flags.FlagValues, **overrides):
    """The `LoopConfig` the loop flags describe; `overrides` replace fields. --train_dir is required."""
    from engine.train_loop import LoopConfig

    require(fv, "train_dir", "checkpoints and summaries are written there")
    fields = {f.name: fv[f.name].value for f in dataclasses.fields(LoopConfig) if f.name in fv}
    return LoopConfig(**{**fields, **overrides})


def require(fv: flags.FlagValues, name: str, why: str = "") -> Any:
    """The value of --name; a UsageError naming it (and `why`) when it was not given."""
    value = fv[name].value
    if value is None or value == "" or value == []:
        raise app.UsageError(f"--{name} is required" + (f": {why}" if why else ""))
    return value


def define_dataset_flags(fv: flags.FlagValues, *, default: str | None = "synthetic", root_help: str | None = None,
                         split_help: str | None = None, options_help: str | None = None,
                         strict_decoding: bool = False) -> None:
    """--dataset (checked against the dataset registry when parsed; help lists the registered names, including
    ones a user's `data.datasets.register` added), --data_root, --split, --dataset_option NAME=VALUE (repeatable,
    typed by the reader's `load` signature: `dataset_options`), and with `strict_decoding` (binaries that read
    images) the flag of that name, applied by `dataset_kwargs` / `apply_strict_decoding`."""
    from data import datasets

    def registered():
        return "Dataset name, one of: " + ", ".join(datasets.names()) + " (data.datasets.register adds more)."

    flags.DEFINE_string("dataset", default, registered(), flag_values=fv)
    fv["dataset"].dynamic_help = registered
    flags.register_validator(
        "dataset", lambda name: name is None or name in datasets.names() or _raise_validation(
            f"unknown dataset; registered: {', '.join(datasets.names())}"), flag_values=fv)
    flags.DEFINE_string("data_root", None, root_help or "Dataset folder in its own layout (the synthetic dataset is "
                        "generated there when absent; default: its cache folder).", flag_values=fv)
    flags.DEFINE_string("split", None, split_help or "Split of datasets that have several (e.g. CUHK03 kvmmn/0, "
                        "CUHK01 100/3); default: the dataset's first.", flag_values=fv)
    flags.DEFINE_multi_string("dataset_option", [], options_help or "Reader option NAME=VALUE, repeatable (e.g. "
                              "test_ids=486 for CUHK01, check_counts=false, num_identities=24 for synthetic).",
                              flag_values=fv)
    if strict_decoding:
        flags.DEFINE_bool("strict_decoding", True, "A partly corrupt JPEG is an error naming the file; "
                          "--nostrict_decoding decodes what libjpeg can.", flag_values=fv)


def _raise_validation(message: str):
    raise flags.ValidationError(message)


def reader_option_types(dataset: str) -> tuple[dict[str, Any], bool]:
    """({option: type or None}, whether the reader takes other keyword options) from the reader's `load`
    signature; None types are inferred by `parse_value`."""
    from data import datasets

    reader = datasets._module(dataset)  # the registry's reader (built-in module or registered object)
    load = reader.load
    try:
        hints = typing.get_type_hints(load)
    except Exception:  # a user's reader with unresolvable annotations: infer every value
        hints = {}
    kinds, open_ended = {}, False
    if dataclasses.is_dataclass(getattr(reader, "OPTIONS", None)):  # a reader whose **params are a dataclass's
        kinds.update(config_field_types(reader.OPTIONS))
    for index, parameter in enumerate(inspect.signature(load).parameters.values()):
        if parameter.kind is parameter.VAR_KEYWORD:
            open_ended = not dataclasses.is_dataclass(getattr(reader, "OPTIONS", None))
        elif index >= 2 and parameter.kind is not parameter.VAR_POSITIONAL:  # after root and split
            kinds[parameter.name] = hints.get(parameter.name) or (
                type(parameter.default) if parameter.default not in (None, inspect.Parameter.empty) else None)
    return kinds, open_ended


def dataset_options(fv: flags.FlagValues, dataset: str | None = None) -> dict:
    """--dataset_option items as typed keyword options of the reader of `dataset` (default --dataset)."""
    dataset = dataset or fv["dataset"].value
    kinds, open_ended = reader_option_types(dataset)
    return parse_assignments(fv["dataset_option"].value, kinds, f"--dataset_option (dataset {dataset})",
                             allow_unknown=open_ended)


def apply_strict_decoding(fv: flags.FlagValues) -> None:
    """Make --strict_decoding (when the binary has it) the process's image-decoding setting
    (`data.pipeline.set_strict_decoding`): every image its libraries read follows it."""
    if "strict_decoding" in fv:
        from data import pipeline

        pipeline.set_strict_decoding(fv["strict_decoding"].value)


def dataset_kwargs(fv: flags.FlagValues) -> dict:
    """{name, root, split, **options}: what `data.datasets.load` takes, from the dataset flags (and
    --strict_decoding applied, `apply_strict_decoding`)."""
    apply_strict_decoding(fv)
    name = require(fv, "dataset")
    return dict(name=name, root=fv["data_root"].value, split=fv["split"].value or None,
                **dataset_options(fv, name))


def load_dataset(fv: flags.FlagValues):
    """The `data.record.Record` the dataset flags name (reader errors are DatasetErrors: one line)."""
    from data import datasets

    return datasets.load(**dataset_kwargs(fv))
