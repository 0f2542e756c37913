"""DataConfig: every data setting declared once, its rules in one place, the DataModule's
constructor argument. The composer reports a broken rule against the YAML layer that set the
key; the DataModule refuses the same config with the same message."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
from omegaconf import OmegaConf

from datamodules import QueryItemDataModule
from relkd.config import compose
from relkd.data.data_config import DataConfig, TermSettings, data_problems
from relkd.data.label_scheme import get_label_scheme
from relkd.errors import ConfigError
from relkd.nets.causal_lm_presets import CausalLMSpec
from relkd.nets.encoder_presets import EncoderSpec
from relkd.runs.student_factory import build_datamodule
from relkd.runs.teacher_factory import build_teacher_datamodule, prompt_spec
from tests.datamodule_fixtures import make_dataset

EXPERIMENTS = Path(__file__).resolve().parents[1] / "experiments"
STUDENT = EXPERIMENTS / "mkd" / "cross_encoder_no_kd.yaml"
TWO_TOWER = EXPERIMENTS / "mkd" / "two_tower_no_kd.yaml"
TEACHER = EXPERIMENTS / "teacher" / "embedded.yaml"

# (experiment, overrides, key, words of the message)
BROKEN = [
    (STUDENT, ["data.batch_size=0"], "batch_size", "must be > 0"),
    (STUDENT, ["data.group_size=1"], "group_size", "must be 0 or >= 2"),
    (STUDENT, ["data.group_size=3"], "batch_size", "multiple of data.group_size (3)"),
    (STUDENT, ["data.max_length=4"], "max_length", "must be >= 8"),
    (STUDENT, ["data.max_item_tokens=0"], "max_item_tokens", "must be >= 1"),
    (STUDENT, ["data.pool_ratio=1.0"], "pool_ratio", "set data.include_unlabeled true"),
    (STUDENT, ["data.with_cot=true"], "with_cot", "set data.teacher_cache"),
    (STUDENT, ["data.layout=diagonal"], "layout", "not in ('packed', 'slots')"),
    (TWO_TOWER, ["data.layout=slots"], "layout", "these batches are bi"),
    (TWO_TOWER, ["data.professional_terms=true"], "professional_terms", "these batches are bi"),
    (STUDENT, ["data.terms.min_count=0"], "terms.min_count", "must be >= 1"),
    (STUDENT, ["data.click_graph.eval_queries=all"], "click_graph.eval_queries", "not in"),
    (STUDENT, ["data.sequences.train_on=clicks"], "sequences.train_on", "not in"),
    (TEACHER, ["data.teacher_cache=cache"], "teacher_cache", "not to a teacher's prompts"),
    (TEACHER, ["data.professional_terms=true"], "professional_terms", "batches are prompt"),
    (TEACHER, ["data.layout=slots"], "layout", "these batches are prompt"),
    (TEACHER, ["data.group_size=4"], "group_size", "a teacher trains on plain batches"),
]


def _encoding(path: Path) -> str:
    return {STUDENT: "cross", TWO_TOWER: "bi", TEACHER: "prompt"}[path]


@pytest.mark.parametrize(
    ("path", "overrides", "key", "words"),
    BROKEN,
    ids=[f"{p.stem}:{o[0]}" for p, o, _, _ in BROKEN],
)
def test_one_rule_reported_by_the_composer_and_the_datamodule_alike(
    tmp_path: Path, path: Path, overrides: list[str], key: str, words: str
) -> None:
    with pytest.raises(ConfigError) as composed:
        compose(path, overrides)
    line = str(composed.value)
    assert "\n" not in line
    source = "command line" if key == overrides[0].split("=")[0][5:] else str(EXPERIMENTS)
    assert line.startswith(source) and f": key data.{key}: " in line and words in line, line

    # the same settings, built without the composer, are refused by the DataModule
    name, _, value = overrides[0].partition("=")
    plain = OmegaConf.to_container(OmegaConf.from_dotlist([f"{name}={value}"]))["data"]
    fields = {k: (TermSettings(**v) if k == "terms" else v) for k, v in plain.items()}
    if key.startswith(("click_graph.", "sequences.")):
        section, _, leaf = key.partition(".")
        fields = {section: dataclasses.replace(getattr(DataConfig(), section), **{leaf: value})}
    data = DataConfig(**fields)
    with pytest.raises(ConfigError) as built:
        QueryItemDataModule(tmp_path / "none", "tok", data, encoding=_encoding(path))
    assert str(built.value).startswith(f"data.{key}: ") and words in str(built.value)
    assert line.endswith(str(built.value).removeprefix(f"data.{key}: "))


def test_problems_lists_every_broken_rule_and_none_for_the_defaults() -> None:
    for encoding in ("cross", "bi", "prompt"):
        assert DataConfig().problems(encoding) == []
    bad = DataConfig(batch_size=0, max_length=4, layout="slots")
    keys = [key for key, _ in bad.problems("bi")]
    assert keys == ["batch_size", "max_length", "layout"]
    assert bad.problems("cross")[-1][0] == "max_length"  # slots is a cross layout
    assert [k for k, _ in data_problems(bad, "cross")] == ["batch_size", "max_length"]
    assert DataConfig().problems("sparse") == [
        ("encoding", "'sparse' not in ('cross', 'bi', 'prompt')")
    ]


def test_of_gives_the_composed_values_typed(tmp_path: Path) -> None:
    cfg = compose(STUDENT, ["data.batch_size=16", "data.terms.max_terms=50"])
    data = DataConfig.of(cfg.data)
    assert isinstance(data, DataConfig) and isinstance(data.terms, TermSettings)
    assert OmegaConf.to_container(OmegaConf.structured(data)) == OmegaConf.to_container(cfg.data)
    assert (data.batch_size, data.terms.max_terms) == (16, 50)
    assert DataConfig.of(data) is data
    with pytest.raises(TypeError, match="not DataConfig"):
        DataConfig.of(OmegaConf.create({"batch_size": 8}))  # not a node of the schema


def test_the_factories_hand_the_datamodule_the_whole_data_section(tmp_path: Path) -> None:
    """No field is copied by hand: every data setting reaches the DataModule as composed."""
    make_dataset(tmp_path, n_queries=4, items_per_query=3)
    cfg = compose(STUDENT, ["data.batch_size=16", "data.max_item_tokens=40", "seed=3"])
    spec = EncoderSpec(name="minilm", tokenizer="tok", pretrained=None, config_overrides={})
    dm = build_datamodule(cfg, tmp_path, spec)
    assert dm.data == DataConfig.of(cfg.data) and dm.encoding == "cross" and dm.seed == 3
    assert dm.hparams["data"]["max_item_tokens"] == 40

    tcfg = compose(TEACHER, ["data.eval_batch_size=24", "teacher.prompt.format=plain"])
    tspec = CausalLMSpec(name="minilm-causal", tokenizer="tok", pretrained=None)
    pspec = prompt_spec(tcfg, get_label_scheme("esci"), tspec)
    tdm = build_teacher_datamodule(tcfg, tmp_path, tspec, pspec)
    assert tdm.data == DataConfig.of(tcfg.data) and tdm.encoding == "prompt"
    assert tdm.data.eval_batch_size == 24
