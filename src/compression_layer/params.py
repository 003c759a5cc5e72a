"""The one params loader: reads params.yaml and builds typed, documented config objects.

Every config is a dataclass whose fields carry a ``help`` text in their metadata (the model is
mlx-lm's ``TrainingArgs``). Building one from a mapping rejects unknown keys (with a "did you
mean" hint) and values of the wrong type, so a typo in params.yaml fails with one clear line
instead of being silently ignored.
"""

from __future__ import annotations

import dataclasses
import difflib
import re
import types
import typing
from pathlib import Path
from typing import Any, Mapping, TypeVar

import yaml

T = TypeVar("T")


class ParamsError(ValueError):
    """A params file or value that cannot be used; the message is one line for the user."""


def field(default: Any, help: str, **kwargs: Any) -> Any:
    """A dataclass field with its help text (shown in errors and docs)."""
    if isinstance(default, (list, dict)):
        value = default
        return dataclasses.field(default_factory=lambda: type(value)(value), metadata={"help": help}, **kwargs)
    return dataclasses.field(default=default, metadata={"help": help}, **kwargs)


# PyYAML follows YAML 1.1, where `1e-5` (no dot) is a string; accept it as a float (as mlx-lm does).
_FLOAT_RE = re.compile(
    r"""^(?:[-+]?(?:[0-9][0-9_]*)\.[0-9_]*(?:[eE][-+]?[0-9]+)?
    |[-+]?(?:[0-9][0-9_]*)(?:[eE][-+]?[0-9]+)
    |\.[0-9_]+(?:[eE][-+][0-9]+)?
    |[-+]?\.(?:inf|Inf|INF)
    |\.(?:nan|NaN|NAN))$""",
    re.X,
)


class _Loader(yaml.SafeLoader):
    pass


_Loader.add_implicit_resolver("tag:yaml.org,2002:float", _FLOAT_RE, list("-+0123456789."))


def load_yaml(path: str | Path) -> dict[str, Any]:
    """Read a params file as a plain dict (floats like ``1e-5`` read as floats)."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ParamsError(f"params file not found: {path}") from None
    try:
        data = yaml.load(text, Loader=_Loader)
    except yaml.YAMLError as exc:
        raise ParamsError(f"{path}: not valid YAML: {str(exc).splitlines()[0]}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ParamsError(f"{path}: expected a mapping at the top level, got {type(data).__name__}")
    return data


def _type_name(tp: Any) -> str:
    return getattr(tp, "__name__", str(tp).replace("typing.", ""))


def _coerce(value: Any, tp: Any, where: str) -> Any:
    """Check ``value`` against annotation ``tp``; allow int -> float and numeric strings -> float."""
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(tp)
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _coerce(value, arg, where)
            except ParamsError as exc:
                errors.append(exc)
        raise errors[0] if errors else ParamsError(f"{where}: unexpected value {value!r}")
    if origin is typing.Literal:
        choices = typing.get_args(tp)
        if value not in choices:
            raise ParamsError(f"{where}: {value!r} is not one of {', '.join(map(repr, choices))}")
        return value
    if origin is list:
        if not isinstance(value, list):
            raise ParamsError(f"{where}: expected a list, got {value!r}")
        (item_tp,) = typing.get_args(tp) or (Any,)
        return [_coerce(v, item_tp, f"{where}[{i}]") for i, v in enumerate(value)]
    if origin is dict:
        if not isinstance(value, dict):
            raise ParamsError(f"{where}: expected a mapping, got {value!r}")
        return dict(value)
    if tp is Any:
        return value
    if tp is bool:
        if isinstance(value, bool):
            return value
        raise ParamsError(f"{where}: expected true or false, got {value!r}")
    if tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
        raise ParamsError(f"{where}: expected an integer, got {value!r}")
    if tp is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str):
            try:
                return float(value)
            except ValueError:
                pass
        raise ParamsError(f"{where}: expected a number, got {value!r}")
    if tp is str:
        if isinstance(value, str):
            return value
        raise ParamsError(f"{where}: expected a string, got {value!r}")
    raise ParamsError(f"{where}: unsupported type {_type_name(tp)}")


def unknown_key_error(key: str, known: list[str], where: str) -> ParamsError:
    close = difflib.get_close_matches(key, known, n=1)
    hint = f" (did you mean '{close[0]}'?)" if close else ""
    return ParamsError(f"{where}: unknown key '{key}'{hint}")


def build(cls: type[T], values: Mapping[str, Any], where: str) -> T:
    """Build dataclass ``cls`` from ``values``: unknown keys and wrong types raise ParamsError."""
    if not isinstance(values, Mapping):
        raise ParamsError(f"{where}: expected a mapping, got {values!r}")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    hints = typing.get_type_hints(cls)
    kwargs = {}
    for key, value in values.items():
        if key not in fields:
            raise unknown_key_error(str(key), list(fields), where)
        kwargs[key] = _coerce(value, hints[key], f"{where}.{key}" if where else key)
    obj = cls(**kwargs)
    check = getattr(obj, "validate", None)
    if check is not None:
        check()
    return obj


def field_help(cls: type) -> dict[str, str]:
    """Field name -> help text, for documentation and tests."""
    return {f.name: f.metadata.get("help", "") for f in dataclasses.fields(cls)}


def load_section(path: str | Path, section: str, cls: type[T]) -> T:
    """Build ``cls`` from one top-level section (``preprocess_nl:``, ``split:``...) of params.yaml."""
    data = load_yaml(path)
    if section not in data:
        raise ParamsError(f"{path}: missing section '{section}'")
    return build(cls, data[section] or {}, f"{path}:{section}")


# ---- data stages ---------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class PreprocessParams:
    """Thresholds of one preprocess pass (``preprocess_nl`` or ``preprocess_code`` in params.yaml)."""

    max_char_ratio: float = field(0.95, "Reject when len(compressed)/len(verbose) in characters is >= this.")
    max_token_ratio: float = field(0.95, "Reject when tokens(compressed)/tokens(verbose) (cl100k_base) is > this.")

    def validate(self) -> None:
        for name in ("max_char_ratio", "max_token_ratio"):
            if getattr(self, name) <= 0:
                raise ParamsError(f"{name} must be > 0, got {getattr(self, name)}")


@dataclasses.dataclass(frozen=True)
class SplitParams:
    """Split ratios and seed (``split`` in params.yaml)."""

    train_ratio: float = field(0.8, "Share of each domain's pairs that go to train.")
    valid_ratio: float = field(0.1, "Share of each domain's pairs that go to valid.")
    test_ratio: float = field(0.1, "Share of each domain's pairs that go to test (the rest after train and valid).")
    seed: int = field(42, "Seed of the per-domain shuffles; same inputs and seed give byte-identical splits.")

    def validate(self) -> None:
        ratios = (self.train_ratio, self.valid_ratio, self.test_ratio)
        if any(r < 0 for r in ratios):
            raise ParamsError(f"split ratios must be >= 0, got {ratios}")
        if abs(sum(ratios) - 1.0) > 1e-6:
            raise ParamsError(
                f"split ratios must sum to 1, got {self.train_ratio} + {self.valid_ratio} + {self.test_ratio} = {sum(ratios):.6g}"
            )


@dataclasses.dataclass(frozen=True)
class DatasetParams:
    """Where train and evaluate take their splits from (``dataset`` in params.yaml)."""

    source: typing.Literal["local", "hf"] = field(
        "local", "local = the pipeline's data/training/ (preprocess -> split -> sanitize); hf = a Hugging Face dataset repo."
    )
    hf_repo: typing.Optional[str] = field(
        None, "With source hf: the dataset repo id (e.g. Sudhendra/semantic-compression-sft)."
    )
    hf_revision: typing.Optional[str] = field(
        None, "With source hf: branch, tag or commit hash; null = main. The resolved commit is recorded."
    )

    def validate(self) -> None:
        if self.source == "hf" and not (self.hf_repo or "").strip():
            raise ParamsError("dataset.source is 'hf' but dataset.hf_repo is not set (e.g. owner/dataset-name)")
        if self.hf_revision is not None and not self.hf_revision.strip():
            raise ParamsError("dataset.hf_revision must be a branch, tag or commit hash, or null for main")
