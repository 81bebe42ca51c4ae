"""Pipeline configuration: one YAML file per pipeline, defaults filled in, flags override, every field checked, and
a typed view of the result.

Code reads a value as a typed attribute: `cfg.deploy.nms_iou` is a float, `cfg.model.input_size` a (width, height)
tuple, `cfg.train.loss_weights.obj` a float (the sections are the frozen dataclasses of pipeline/config_schema.py).
`cfg.values` is the same config as the plain nested dict a YAML file holds: stages hash it (or parts of it) into
their manifests as parameters. `cfg.get("a.b")` is for a key that is itself data (a dotted key from a flag table).

Adding a key: one line in its section's dataclass in pipeline/config_schema.py, e.g. in CompileSection
    `weight_bits: int = setting(8, Rule("int", choices=(4, 8)), "bits per KPU weight")`
(the annotation is the type code reads; the default as written in YAML; the Rule from pipeline.values checks config
files, `--set` and task flags alike; the text is its documentation). Nothing else: DEFAULTS and RULES below are
derived from the dataclasses, and tests/test_config_typed.py checks the new key's type, rule and doc. A new section
is a new dataclass plus one `_Section(...)` line in Config."""

from __future__ import annotations

import copy
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Generic, TypeVar

import yaml

from pipeline import config_schema as schema
from pipeline.errors import PipelineError
from pipeline.text_files import read_utf8
from pipeline.values import Rule, yaml_value

REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_CONFIG = REPO_ROOT / "configs" / "demo.yaml"
SHARED_DATA = REPO_ROOT.parent / "shared" / "data"
S = TypeVar("S")


def rule_for(dotted: str) -> Rule:
    """The rule of a config key."""
    return RULES[dotted]


def _is_leaf(dotted: str) -> bool:
    node: Any = DEFAULTS
    for part in dotted.split("."):
        if not isinstance(node, dict) or part not in node:
            return False
        node = node[part]
    return not (isinstance(node, dict) and node)


def parse_setting(dotted: str, value: Any) -> Any:
    """A value given on the command line (flag text or a `--set` YAML value) for config key `dotted`, parsed and
    checked by its rule; unknown keys are left to the config merge, which names them."""
    return rule_for(dotted).parse(value, field=dotted, path="command line") if _is_leaf(dotted) else value


def build_root() -> Path:
    """build/, or $PIPELINE_BUILD_ROOT when set (tests use a temp folder)."""
    return Path(os.environ.get("PIPELINE_BUILD_ROOT", REPO_ROOT / "build"))


class _Section(Generic[S]):
    """A typed section of a Config, made from its values on first use and kept (frozen: set past __setattr__, as
    functools.cached_property does); a key the values lack keeps its default."""

    def __init__(self, cls: type[S]) -> None:
        self.cls = cls
        self.name = ""

    def __set_name__(self, owner: type, name: str) -> None:
        self.name = name

    def __get__(self, cfg: Config | None, owner: type) -> S:
        if cfg is None:
            raise AttributeError(f"Config.{self.name} is read on a loaded config")
        section = schema.from_values(self.cls, cfg.values.get(self.name, {}))
        cfg.__dict__[self.name] = section
        return section


@dataclass(frozen=True)
class Config:
    """A loaded pipeline config: its typed sections, its values as a plain dict, the file it came from and where its
    artifacts go."""

    name: str
    path: Path
    values: dict[str, Any]

    dataset = _Section(schema.DatasetSection)
    model = _Section(schema.ModelSection)
    train = _Section(schema.TrainSection)
    recognizer = _Section(schema.RecognizerSection)
    attendance = _Section(schema.AttendanceSection)
    prune = _Section(schema.PruneSection)
    quantize = _Section(schema.QuantizeSection)
    export = _Section(schema.ExportSection)
    eval = _Section(schema.EvalSection)
    compile = _Section(schema.CompileSection)
    deploy = _Section(schema.DeploySection)
    firmware = _Section(schema.FirmwareSection)

    @property
    def build_dir(self) -> Path:
        """build/<config>/, under $PIPELINE_BUILD_ROOT when set (tests use a temp folder)."""
        return build_root() / self.name

    def get(self, dotted: str) -> Any:
        """The value of a dotted key as the YAML holds it, for a key that is data (a flag table's, a lab check's)."""
        node: Any = self.values
        for part in dotted.split("."):
            node = node[part]
        return node

    def with_values(self, overrides: dict[str, Any]) -> Config:
        """A copy with dotted-key values replaced (None leaves a value as it is)."""
        values = copy.deepcopy(self.values)
        for key, value in overrides.items():
            if value is None:
                continue
            node = values
            *parents, last = key.split(".")
            for part in parents:
                node = node[part]
            if last not in node:
                raise PipelineError("unknown key", path=self.path, field=key)
            node[last] = rule_for(key).check(value, field=key, path=self.path) if _is_leaf(key) else value
        return Config(self.name, self.path, values)

    def resolve_path(self, value: str | None) -> Path | None:
        """A path from the config, relative to the config file's folder unless absolute."""
        if value is None:
            return None
        path = Path(value).expanduser()
        return path if path.is_absolute() else (self.path.parent / path).resolve()


SECTIONS: dict[str, type] = {name: item.cls for name, item in vars(Config).items() if isinstance(item, _Section)}
# Every key a config may hold, with its default, as the nested dict a YAML file holds. A key not listed here is
# refused, so a typo never passes silently.
DEFAULTS: dict[str, Any] = {name: schema.default_values(cls) for name, cls in SECTIONS.items()}
# The type, range and units of every key: the config file, `--set` and task flags are all checked by these. Names
# whose list lives with the code that uses them (model.family, dataset.format, deploy.board, ...) are checked there
# and only typed here.
RULES: dict[str, Rule] = {key: rule for name, cls in SECTIONS.items()
                          for key, rule in schema.rules(cls, name + ".").items()}


def _merge(defaults: dict[str, Any], given: dict[str, Any], path: Path, prefix: str) -> dict[str, Any]:
    merged = copy.deepcopy(defaults)
    for key, value in given.items():
        dotted = f"{prefix}{key}"
        if key not in defaults:
            known = ", ".join(sorted(defaults))
            raise PipelineError("unknown key", path=path, field=dotted, expected=f"one of: {known}")
        default = defaults[key]
        if isinstance(default, dict) and default and not isinstance(value, dict):
            raise PipelineError(f"got {type(value).__name__}", path=path, field=dotted, expected="a mapping")
        if isinstance(default, dict) and default:
            merged[key] = _merge(default, value, path, dotted + ".")
        else:
            merged[key] = rule_for(dotted).check(value, field=dotted, path=path)
    return merged


def parse_override(text: str) -> tuple[str, Any]:
    """Parse `key.sub=value` (value read as YAML) as given to `--set`."""
    if "=" not in text:
        raise PipelineError(f"override {text!r} has no '='", field="--set", expected="key.sub=value")
    key, raw = text.split("=", 1)
    key = key.strip()
    if not raw.strip():
        raise PipelineError(f"override {text!r} has no value", field=key, expected="key.sub=value")
    return key, yaml_value(raw, field=key)


def load_config(path: str | Path | None = None, overrides: dict[str, Any] | None = None) -> Config:
    """Load a config file, fill defaults, apply dotted-key overrides (flags), and check every field."""
    path = Path(path) if path else DEFAULT_CONFIG
    if not path.is_absolute() and not path.exists():
        path = REPO_ROOT / path
    if not path.is_file():
        raise PipelineError("config file not found", path=path, expected="a YAML file such as configs/demo.yaml")
    try:
        given = yaml.safe_load(read_utf8(path)) or {}
    except yaml.YAMLError as exc:
        raise PipelineError(f"not valid YAML: {exc}", path=path) from exc
    if not isinstance(given, dict):
        raise PipelineError("top level is not a mapping", path=path, expected="keys such as dataset, model")
    for key, value in (overrides or {}).items():
        if value is None:
            continue
        value = parse_setting(key, value)
        node = given
        parts = key.split(".")
        for part in parts[:-1]:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise PipelineError("cannot override inside a non-mapping", path=path, field=key)
        node[parts[-1]] = value
    values = _merge(DEFAULTS, given, path, "")
    return Config(name=path.stem, path=path.resolve(), values=values)
