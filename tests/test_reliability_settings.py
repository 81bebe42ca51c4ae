"""One validated parser for config files, `--set` and task flags (pipeline.config.RULES, pipeline.values.Rule):
each bad value ends with exit code 2 and one line naming the field and the expectation."""

from __future__ import annotations

import inspect

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import tasks
from pipeline.config import DEFAULTS, RULES, load_config, parse_override, rule_for
from pipeline.errors import PipelineError
from pipeline.values import Rule, count, fraction
from tests.conftest import assert_refused, run_in_process, run_subprocess, snapshot


def _leaves(node: dict, prefix: str = "") -> list[str]:
    keys = []
    for key, value in node.items():
        if isinstance(value, dict) and value:
            keys += _leaves(value, f"{prefix}{key}.")
        else:
            keys.append(f"{prefix}{key}")
    return keys


def test_every_config_key_has_a_rule_next_to_its_default():
    missing = [key for key in _leaves(DEFAULTS) if key not in RULES]
    assert not missing, f"add a Rule for these keys to pipeline.config.RULES: {missing}"
    assert not set(RULES) - set(_leaves(DEFAULTS)), "a rule for a key DEFAULTS does not have"
    for key in _leaves(DEFAULTS):
        default = key.split(".")
        node = DEFAULTS
        for part in default:
            node = node[part]
        rule_for(key).check(node, field=key)  # every default obeys its own rule


def test_every_task_reports_errors():
    bodies = {name: obj.body for name, obj in inspect.getmembers(tasks) if hasattr(obj, "body")}
    assert {"train", "export", "simboard", "test", "clean"} <= set(bodies)
    assert [name for name, body in bodies.items() if not getattr(body, "reports_errors", False)] == []


BAD_VALUES = [
    ("train.epochs", "-3", "whole number >= 1"),
    ("train.batch_size", "0", "whole number >= 1"),
    ("dataset.synthetic.train_count", "-5", "whole number >= 1"),
    ("model.input_size", "[]", "list of 2 whole numbers"),
    ("dataset.synthetic.size", "[320]", "list of 2 whole numbers"),
    ("deploy.score_threshold", "1.5", "<= 1"),
    ("model.output_stride", "8", "one of: 16, 32"),
    ("train.learning_rate", ".nan", "number > 0"),
    ("compile.budget_mib", "1e999", "number > 0"),
]


@pytest.mark.parametrize("key, text, words", BAD_VALUES)
def test_config_file_and_set_refuse_the_same_value_the_same_way(tmp_path, key, text, words):
    *parents, last = key.split(".")
    yaml_text, indent = "", ""
    for part in parents:
        yaml_text += f"{indent}{part}:\n"
        indent += "  "
    path = tmp_path / "c.yaml"
    path.write_text(yaml_text + f"{indent}{last}: {text}\n")
    with pytest.raises(PipelineError) as from_file:
        load_config(path)
    with pytest.raises(PipelineError) as from_set:
        load_config(None, dict([parse_override(f"{key}={text}")]))
    for error in (from_file.value, from_set.value):
        assert f"field '{key}'" in str(error) and words in str(error)
    assert str(path) in str(from_file.value) and "command line" in str(from_set.value)


# (task arguments, words the one error line must contain): every flag that converts a number goes through the rules
FLAG_PROBES = [
    (["train", "--epochs", "abc"], ["train.epochs", "'abc'"]),
    (["train", "--width", "wide"], ["model.width"]),
    (["compile", "--budget", "abc"], ["compile.budget_mib"]),
    (["export", "--calib-images", "abc"], ["quantize.calib_images"]),
    (["quantize", "--held-images", "-1"], ["export.held_images"]),
    (["prune", "--sparsity", "1"], ["prune.sparsity", "< 1"]),
    (["prune", "--epochs", "x"], ["prune.finetune_epochs"]),
    (["flash", "--demo-images", "abc"], ["--demo-images"]),
    (["flash", "--baud", "fast"], ["deploy.baud"]),
    (["flash", "--address", "-4096"], ["deploy.kmodel_address"]),
    (["simboard", "--port", "70000"], ["--port", "65535"]),
    (["simboard", "--corrupt-in", "1.5"], ["--corrupt-in", "<= 1"]),
    (["simboard", "--stall-rate", "-0.1"], ["--stall-rate"]),
    (["simboard", "--wiring", "rts"], ["--wiring", "dan, kd233"]),
    (["simboard", "--idle-timeout", "soon"], ["--idle-timeout"]),
    (["train", "--set", "train.batch_size=0"], ["train.batch_size"]),
    (["train", "--set", "train.epochs=[1"], ["train.epochs", "not a YAML value"]),
    (["train", "--set", "model.input_size=[]"], ["model.input_size"]),
    (["train", "--set", "train.epochs="], ["train.epochs", "no value"]),
    (["data", "--set", "dataset.synthetic.train_count=-2"], ["dataset.synthetic.train_count"]),
]


@pytest.mark.parametrize("args, words", FLAG_PROBES, ids=[" ".join(a) for a, _ in FLAG_PROBES])
def test_bad_flag_values_are_one_clear_line(tmp_path, monkeypatch, args, words):
    (tmp_path / "demo").mkdir()
    (tmp_path / "demo" / "kept.txt").write_text("an earlier artifact")
    before = snapshot(tmp_path)
    assert_refused(run_in_process(args, tmp_path, monkeypatch), *words)
    assert snapshot(tmp_path) == before


@pytest.mark.parametrize("args, words", [FLAG_PROBES[0], FLAG_PROBES[10], FLAG_PROBES[16]],
                         ids=["epochs", "port", "set-not-yaml"])
def test_bad_flags_through_the_real_invoke_command(tmp_path, args, words):
    assert_refused(run_subprocess(args, tmp_path), *words)
    assert snapshot(tmp_path) == {}


def _count_oracle(text: str, low: int) -> bool:
    """Independent of Rule: is `text` a whole number >= low as a person would write it?"""
    stripped = text.strip()
    body = stripped[1:] if stripped[:1] in "+-" else stripped
    if not body.isascii() or not body.replace("_", "").isdigit() or body.startswith("_") or "__" in body:
        return stripped.lower().startswith(("0x", "0o", "0b")) and _prefixed_ok(stripped, low)
    try:
        return int(stripped) >= low
    except ValueError:
        return False


def _prefixed_ok(text: str, low: int) -> bool:
    try:
        return int(text, 0) >= low
    except ValueError:
        return False


@settings(max_examples=200, deadline=None)
@given(st.one_of(st.text(max_size=12), st.integers(-10**30, 10**30).map(str),
                 st.floats(allow_nan=True, allow_infinity=True).map(repr)))
def test_count_rule_accepts_exactly_whole_numbers_in_range(text):
    rule = count(1)
    try:
        value = rule.parse(text, field="x")
    except PipelineError as exc:
        assert "field 'x'" in str(exc) and "whole number >= 1" in str(exc)
        assert not _count_oracle(text, 1)
    else:
        assert isinstance(value, int) and value >= 1 and _count_oracle(text, 1)


@settings(max_examples=200, deadline=None)
@given(st.one_of(st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=8), st.integers(-5, 5),
                 st.booleans(), st.none(), st.lists(st.integers(), max_size=2)))
def test_fraction_rule_is_a_finite_number_in_0_1(value):
    try:
        checked = fraction().check(value, field="p")
    except PipelineError as exc:
        assert "field 'p'" in str(exc) and "<= 1" in str(exc)
        assert not (isinstance(value, (int, float)) and not isinstance(value, bool) and 0 <= value <= 1)
    else:
        assert isinstance(checked, (int, float)) and not isinstance(checked, bool) and 0 <= checked <= 1


HOSTILE = st.one_of(st.integers(-10**6, 10**6), st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=6),
                    st.booleans(), st.none(), st.lists(st.integers(-3, 400), max_size=3),
                    st.dictionaries(st.text(max_size=3), st.integers(), max_size=2))


def _config_with(key: str, value) -> dict:
    root: dict = {}
    node = root
    *parents, last = key.split(".")
    for part in parents:
        node = node.setdefault(part, {})
    node[last] = value
    return root


def _fuzz_config_values(tmp_path_factory, key: str, value) -> None:
    import yaml

    path = tmp_path_factory.mktemp("cfg") / "fuzz.yaml"
    path.write_text(yaml.safe_dump(_config_with(key, value)))
    try:
        cfg = load_config(path)
    except PipelineError as exc:
        assert str(path) in str(exc) and f"field '{key}'" in str(exc)
    else:
        rule_for(key).check(cfg.get(key), field=key)  # whatever was accepted obeys the rule


@settings(max_examples=60, deadline=None)
@given(st.sampled_from(sorted(RULES)), HOSTILE)
def test_fuzz_config_values_are_accepted_by_rule_or_refused_naming_file_and_field(tmp_path_factory, key, value):
    _fuzz_config_values(tmp_path_factory, key, value)


@pytest.mark.slow
@settings(max_examples=2000, deadline=None)
@given(st.sampled_from(sorted(RULES)), HOSTILE)
def test_fuzz_config_values_long(tmp_path_factory, key, value):
    _fuzz_config_values(tmp_path_factory, key, value)


def test_non_utf8_config_is_one_clear_error(tmp_path):
    path = tmp_path / "latin.yaml"
    path.write_bytes("train:\n  epochs: 3 # r\xe9glage\n".encode("latin-1"))
    with pytest.raises(PipelineError, match=r"latin\.yaml: not UTF-8 text"):
        load_config(path)


def test_a_rule_without_a_kind_is_a_programming_error():
    with pytest.raises(ValueError):
        Rule("integer")
