"""The typed config (pipeline/config_schema.py): every key a typed attribute of its frozen section, whether it comes
from the defaults, a config file or `--set`; the loader's errors unchanged."""

from __future__ import annotations

import types
from collections.abc import Mapping
from dataclasses import FrozenInstanceError, fields, is_dataclass
from pathlib import Path
from typing import Any, Union, get_args, get_origin, get_type_hints

import pytest

from pipeline.config import DEFAULTS, REPO_ROOT, SECTIONS, Config, load_config
from pipeline.config_schema import key_of
from pipeline.errors import PipelineError


def _conforms(value: Any, hint: Any) -> bool:
    """`value` is of the annotated type (unions, tuple[X, ...], tuple[X, Y], Mapping[str, str], sections)."""
    origin = get_origin(hint)
    if origin in (Union, types.UnionType):
        return any(_conforms(value, option) for option in get_args(hint))
    if hint is type(None):
        return value is None
    if origin is tuple:
        args = get_args(hint)
        if not isinstance(value, tuple):
            return False
        if len(args) == 2 and args[1] is Ellipsis:
            return all(_conforms(item, args[0]) for item in value)
        return len(value) == len(args) and all(_conforms(item, arg) for item, arg in zip(value, args, strict=True))
    if origin is Mapping:
        return isinstance(value, Mapping) and all(isinstance(k, str) and isinstance(v, str) for k, v in value.items())
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if hint is float:
        return isinstance(value, float)
    return isinstance(value, hint)


def _typed_leaves(section: Any, raw: dict[str, Any], prefix: str) -> list[tuple[str, Any, Any, Any]]:
    """(dotted key, typed value, annotation, YAML value) of every key of a section."""
    hints = get_type_hints(type(section))
    found = []
    for item in fields(section):
        value, dotted = getattr(section, item.name), f"{prefix}{key_of(item)}"
        if is_dataclass(value):
            found += _typed_leaves(value, raw[key_of(item)], dotted + ".")
        else:
            found.append((dotted, value, hints[item.name], raw[key_of(item)]))
    return found


def _leaves(cfg: Config) -> list[tuple[str, Any, Any, Any]]:
    return [leaf for name in SECTIONS for leaf in _typed_leaves(getattr(cfg, name), cfg.values[name], name + ".")]


def _dotted(node: dict[str, Any], prefix: str = "") -> list[str]:
    keys = []
    for key, value in node.items():
        keys += _dotted(value, f"{prefix}{key}.") if isinstance(value, dict) and value else [f"{prefix}{key}"]
    return keys


def _as_yaml(value: Any) -> Any:
    """A typed value back in YAML's form: tuples as lists, a mapping as a dict."""
    if isinstance(value, tuple):
        return [_as_yaml(item) for item in value]
    return dict(value) if isinstance(value, Mapping) else value


CONFIGS = sorted((REPO_ROOT / "configs").rglob("*.yaml"))


def test_every_key_is_a_typed_attribute_of_its_section():
    cfg = load_config(None)
    leaves = _leaves(cfg)
    assert sorted(key for key, *_ in leaves) == sorted(_dotted(DEFAULTS))
    for key, value, hint, _ in leaves:
        assert _conforms(value, hint), f"{key}: {value!r} is not {hint}"


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: str(p.relative_to(REPO_ROOT / "configs")))
def test_every_shipped_config_reads_typed(path: Path):
    for key, value, hint, raw in _leaves(load_config(path)):
        assert _conforms(value, hint), f"{path.name} {key}: {value!r} is not {hint}"
        assert _as_yaml(value) == raw, f"{path.name} {key}: {value!r} is not the file's {raw!r}"


def test_a_file_value_and_a_set_override_land_typed(tmp_path):
    path = tmp_path / "mine.yaml"
    path.write_text("train: {learning_rate: 1, epochs: 7}\nmodel: {input_size: [64, 32]}\n"
                    "dataset: {classes: [a, b], class_map: {x: a}}\n")
    cfg = load_config(path, {"deploy.nms_iou": "0.45", "deploy.kmodel_address": "0x400000",
                             "model.anchors": "[[1, 2], [3.5, 4]]", "train.loss_weights.class": "2"})
    assert cfg.train.epochs == 7 and type(cfg.train.epochs) is int
    assert cfg.train.learning_rate == 1.0 and type(cfg.train.learning_rate) is float
    assert cfg.values["train"]["learning_rate"] == 1 and type(cfg.values["train"]["learning_rate"]) is int
    assert cfg.model.input_size == (64, 32)
    assert cfg.values["model"]["input_size"] == [64, 32]  # the values as written: manifests hash these
    assert cfg.dataset.classes == ("a", "b") and dict(cfg.dataset.class_map) == {"x": "a"}
    assert cfg.deploy.nms_iou == 0.45 and cfg.deploy.kmodel_address == 0x400000
    assert cfg.model.anchors == ((1.0, 2.0), (3.5, 4.0)) and type(cfg.model.anchors[0][0]) is float
    assert cfg.train.loss_weights.class_ == 2.0 and type(cfg.train.loss_weights.class_) is float
    assert cfg.train.batch_size == 16  # not given: the default
    for key, value, hint, _ in _leaves(cfg):
        assert _conforms(value, hint), f"{key}: {value!r} is not {hint}"


def test_with_values_gives_a_new_typed_view():
    cfg = load_config(None)
    assert cfg.prune.sparsity == 0.0
    changed = cfg.with_values({"prune.sparsity": 0.5, "model.input_size": [96, 64]})
    assert changed.prune.sparsity == 0.5 and changed.model.input_size == (96, 64)
    assert cfg.prune.sparsity == 0.0 and cfg.values["prune"]["sparsity"] == 0.0


def test_sections_refuse_assignment():
    cfg = load_config(None)
    with pytest.raises(FrozenInstanceError):
        cfg.train.epochs = 3  # type: ignore[misc]
    with pytest.raises(FrozenInstanceError):
        cfg.train = cfg.train  # type: ignore[misc]
    with pytest.raises(FrozenInstanceError):
        cfg.train.loss_weights.obj = 1.0  # type: ignore[misc]
    with pytest.raises(TypeError):
        cfg.dataset.class_map["x"] = "face"  # type: ignore[index]
    assert cfg.train.epochs == 30 and isinstance(cfg.dataset.classes, tuple)


def test_a_partial_config_reads_defaults_for_what_it_lacks():
    cfg = Config(name="part", path=Path("part.yaml"), values={"quantize": {"qat_epochs": 2}})
    assert cfg.quantize.qat_epochs == 2 and cfg.quantize.method == "tflite" and cfg.model.task == "detector"


def test_every_key_documents_itself():
    def walk(cls: type, prefix: str) -> list[str]:
        missing = []
        for item in fields(cls):
            if "section" in item.metadata:
                missing += walk(item.metadata["section"], f"{prefix}{key_of(item)}.")
            elif not item.metadata.get("doc") or "rule" not in item.metadata:
                missing.append(f"{prefix}{key_of(item)}")
        return missing

    assert [key for name, cls in SECTIONS.items() for key in walk(cls, name + ".")] == []


def test_errors_still_name_the_field(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("train: {epoch: 3}\n")
    with pytest.raises(PipelineError) as caught:
        load_config(path)
    assert caught.value.field == "train.epoch" and "epochs" in caught.value.expected
    path.write_text("deploy: {nms_iou: high}\n")
    with pytest.raises(PipelineError) as caught:
        load_config(path)
    assert caught.value.field == "deploy.nms_iou" and caught.value.path == str(path)
    with pytest.raises(PipelineError) as caught:
        load_config(None, {"train.loss_weights.class": "-1"})
    assert caught.value.field == "train.loss_weights.class"
    with pytest.raises(PipelineError) as caught:
        load_config(None).with_values({"train.epochs": 0})
    assert caught.value.field == "train.epochs"
