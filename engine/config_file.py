"""Options from a file (``--config FILE``): one JSON mapping of option names to values, or YAML
when PyYAML is installed, e.g. a run's own ``args.json``.

A file is checked as the command line is: an unknown key, a value of the wrong type or one the
option does not take is one line naming the file and the key. Keys that belong to one invocation
(engine.config.RUN_LOCAL: record dir, resume, device, workers, ...) are left out with a note, and
the accumulation a run resolved for its number of processes (args.json's accum_steps_resolved)
silently, so a run's args.json starts a new run with the same settings. Old names
(engine.config.RENAMED) are read under their new ones.
"""

import difflib
import json
import sys
from dataclasses import fields
from pathlib import Path
from types import NoneType, UnionType
from typing import get_args, get_origin

from engine.config import RUN_LOCAL, Options, renamed
from engine.streams import StreamSpec
from utils.errors import UserError

# Written by training beside the options in args.json, never read: the accum_steps it resolved.
RESOLVED = {"accum_steps_resolved"}
CONFIG_HELP = (
    "read options from FILE: JSON, or YAML (.yaml/.yml; needs PyYAML, not installed with the "
    "toolkit), e.g. a run's own args.json; its values replace the defaults and options on the "
    "command line replace its values (with --resume: command line, then FILE, then the "
    "checkpoint's options, then the defaults). The keys of one invocation are ignored with a "
    f"note (give them on the command line): {', '.join(sorted(RUN_LOCAL))}"
)


def read_config(spec: StreamSpec, path, parser) -> dict:
    """The options of the config file ``path`` for a run of ``spec``, checked by ``parser`` (the
    stream's command line) as if typed there; keys of one invocation are left out with a note."""
    values = renamed({str(k).replace("-", "_"): v for k, v in load_mapping(path).items()})
    types = option_types(spec)
    for key in values:
        if key not in types and key not in RESOLVED:
            close = difflib.get_close_matches(key, types, n=1, cutoff=0.6)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            raise UserError(f"{path}: unknown key {key!r} for the {spec.name} stream{hint}")
    ignored = sorted(k for k in values if k in RUN_LOCAL)
    if ignored:
        print(
            f"note: {path}: ignored {', '.join(ignored)} (they belong to one invocation: "
            "give them on the command line)",
            file=sys.stderr,
            flush=True,
        )
    options = {k: v for k, v in values.items() if k in types and k not in RUN_LOCAL}
    return {k: _checked(path, parser, k, v, types[k]) for k, v in options.items()}


def load_mapping(path) -> dict:
    """The file's mapping: YAML by its suffix (.yaml, .yml), else JSON."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as err:
        reason = getattr(err, "strerror", None) or "not a UTF-8 text file"
        raise UserError(f"--config {path}: cannot read it ({reason})") from None
    if Path(path).suffix.lower() in (".yaml", ".yml"):
        values = _load_yaml(path, text)
    else:
        try:
            values = json.loads(text)
        except json.JSONDecodeError as err:
            raise UserError(f"{path} line {err.lineno}: not valid JSON: {err.msg}") from None
    if not isinstance(values, dict):
        raise UserError(f'{path}: a config holds one mapping of options, e.g. {{"lr": 0.01}}')
    return values


def _load_yaml(path, text: str):
    try:
        import yaml
    except ImportError:
        raise UserError(
            f"{path}: reading YAML needs PyYAML (pip install pyyaml); or write it as JSON"
        ) from None
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark is not None else ""
        problem = getattr(err, "problem", None) or err
        raise UserError(f"{path}{where}: not valid YAML: {problem}") from None


def option_types(spec: StreamSpec) -> dict:
    """Every option of ``spec`` and the type its value has (Options' annotations)."""
    types = {f.name: f.type for f in fields(Options) if f.name != "stream"}
    types.update({o.name: type(o.default) for o in spec.options})
    return types


def _fits(value, kind) -> bool:
    if isinstance(kind, UnionType):
        return any(_fits(value, k) for k in get_args(kind))
    if get_origin(kind) is list:
        return isinstance(value, list) and all(_fits(v, get_args(kind)[0]) for v in value)
    if isinstance(value, bool) and kind is not bool:
        return False  # JSON true is not the number 1
    if kind is float:
        return isinstance(value, int | float)
    return isinstance(value, kind)


def _described(kind) -> str:
    if isinstance(kind, UnionType):
        return " or ".join(_described(k) for k in get_args(kind))
    if get_origin(kind) is list:
        return f"a list of {_described(get_args(kind)[0]).removeprefix('a ')}s"
    names = {int: "a whole number", float: "a number", bool: "true or false", NoneType: "null"}
    return names.get(kind, "a string")


def _checked(path, parser, key: str, value, kind):
    """``value`` of ``key`` as the command line takes it: of the option's type (no "3" for a
    number), then parsed by ``parser`` (choices, conversions)."""
    if not _fits(value, kind):
        hint = ""
        if isinstance(value, str) and _fits(1.0, kind) and Path(path).suffix != ".json":
            hint = " (YAML reads 1e-3 as text: write 1.0e-3)"
        raise UserError(
            f"{path}: {key!r} must be {_described(kind)}, not {json.dumps(value, default=str)}"
            + hint
        )
    if value is None:  # not expressible on the command line: the option's "follow the others"
        return None
    flag = "--" + key.replace("_", "-")
    if isinstance(value, bool):
        argv = [flag if value else "--no-" + flag[2:]]
    elif isinstance(value, list):
        argv = [flag, *map(str, value)]
    else:
        argv = [f"{flag}={value}"]
    try:
        return getattr(parser.parse_args(argv), key)
    except UserError as err:
        raise UserError(f"{path}: {key!r}: {str(err).removeprefix(f'argument {flag}: ')}") from None
