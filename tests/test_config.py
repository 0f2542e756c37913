"""The experiment config system: layering, validation errors that name key and file, every YAML."""

from __future__ import annotations

from pathlib import Path

import pytest
from omegaconf import OmegaConf

from relkd.config import ExperimentConfig, compose
from relkd.errors import ConfigError

EXPERIMENTS = Path(__file__).resolve().parents[1] / "experiments"


def write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


@pytest.fixture
def exp_dir(tmp_path: Path) -> Path:
    (tmp_path / "base.yaml").write_text((EXPERIMENTS / "base.yaml").read_text())
    return tmp_path


EXPERIMENT_YAMLS = sorted(
    p
    for p in EXPERIMENTS.rglob("*.yaml")
    if p.parent.name not in ("pipeline", "ablations", "studies")
)
# recipes that distil name their teacher cache on the command line
DISTILS = ("mkd", "walmart", "berm", "robust", "seminar")
# families whose run folders carry the family name (runs/teacher_embedded, runs/seminar_pretrain)
PREFIXED = ("teacher", "seminar")


@pytest.mark.parametrize("path", EXPERIMENT_YAMLS, ids=lambda p: str(p.relative_to(EXPERIMENTS)))
def test_every_experiment_yaml_validates(path: Path) -> None:
    extra = ["data.teacher_cache=cache"] if path.parent.name in DISTILS else []
    cfg = compose(path, extra)  # no weights, no data: composition and validation only
    if path.parent.name == "teacher":
        assert cfg.task == "teacher"
    else:
        assert cfg.task == "student"
    if path.parent.name in PREFIXED:
        assert cfg.experiment == f"{path.parent.name}_{path.stem}"
    else:
        assert cfg.experiment == ("base" if path.name == "base.yaml" else path.stem)


def test_gpu_teacher_presets_name_hub_models_without_loading_them() -> None:
    for name, model in (
        ("qwen2.5-0.5b", "Qwen/Qwen2.5-0.5B-Instruct"),
        ("qwen2.5-7b", "Qwen/Qwen2.5-7B-Instruct"),
    ):
        cfg = compose(EXPERIMENTS / "teacher" / f"{name}.yaml")
        assert cfg.teacher.model == model and cfg.teacher.finetune == "lora"
        assert (
            "q_proj" in cfg.teacher.lora.target_modules
            and "down_proj" in cfg.teacher.lora.target_modules
        )
        assert str(cfg.trainer.precision).startswith("bf16") and cfg.trainer.accelerator == "gpu"


@pytest.mark.parametrize(
    ("text", "key", "message"),
    [
        ("loss:\n  weights:\n    cot_lm: 1.0\n", "loss.weights", "teacher-only"),
        (
            "task: teacher\nloss:\n  weights:\n    cot_lm: 1.0\n",
            "loss.weights",
            "classifier has none",
        ),
        ("task: teacher\nteacher:\n  mode: cot\n", "teacher.mode", "cot_lm a weight"),
        ("task: teacher\nteacher:\n  aggregation: fitted\n", "teacher.aggregation", "progressive"),
        ("teacher:\n  mode: oracle\n", "teacher.mode", "not in"),
        (
            "teacher:\n  prompt:\n    item_fields: [title, price]\n",
            "teacher.prompt.item_fields",
            "price",
        ),
        ("teacher:\n  prompt:\n    neighbors:\n      min_ctr: 2\n", "min_ctr", "must be in"),
        (
            "teacher:\n  prompt:\n    neighbors:\n      eval_queries: future\n",
            "eval_queries",
            "not in",
        ),
        ("teacher:\n  cot:\n    source: jsonl\n", "teacher.cot.source", "needs teacher.cot.file"),
        ("task: oracle\n", "task", "not in"),
    ],
)
def test_teacher_settings_are_validated(exp_dir: Path, text: str, key: str, message: str) -> None:
    exp = write(exp_dir / "t.yaml", text)
    with pytest.raises(ConfigError, match=rf"t\.yaml.*{key}.*{message}"):
        compose(exp)


def test_base_yaml_sets_every_schema_key() -> None:
    """base.yaml documents every knob: no schema key may be left to a hidden default."""

    def keys(node: dict, prefix: str = "") -> set[str]:
        out = set()
        for k, v in node.items():
            if isinstance(v, dict) and k != "weights":
                out |= keys(v, f"{prefix}{k}.")
            else:
                out.add(f"{prefix}{k}")
        return out

    schema = OmegaConf.to_container(OmegaConf.structured(ExperimentConfig))
    base = OmegaConf.to_container(OmegaConf.load(EXPERIMENTS / "base.yaml"))
    assert keys(base) == keys(schema)


def test_base_yaml_values_equal_the_dataclass_defaults() -> None:
    """Each setting is declared once: base.yaml documents the defaults the dataclasses hold, so
    code that builds a config without base.yaml gets the same run."""

    def flat(node: dict, prefix: str = "") -> dict[str, object]:
        out: dict[str, object] = {}
        for k, v in node.items():
            if isinstance(v, dict) and v:
                out |= flat(v, f"{prefix}{k}.")
            else:
                out[f"{prefix}{k}"] = v
        return out

    schema = flat(OmegaConf.to_container(OmegaConf.structured(ExperimentConfig)))
    base = flat(OmegaConf.to_container(OmegaConf.load(EXPERIMENTS / "base.yaml")))
    differ = {k: (base.get(k), schema.get(k)) for k in base.keys() | schema.keys()}
    # the one documented exception: runs saved before the held-out splits existed lack these
    # keys, and must reopen on their own dataset (experiment_config.SyntheticDataConfig)
    legacy = {"data.synthetic.val_pairs": (4000, 0), "data.synthetic.test_pairs": (10000, 0)}
    assert {k: v for k, v in differ.items() if v[0] != v[1]} == legacy


def test_layers_apply_in_order(exp_dir: Path) -> None:
    exp = write(exp_dir / "exp.yaml", "trainer:\n  max_epochs: 7\ndata:\n  batch_size: 8\n")
    cfg = compose(exp, ["data.batch_size=16"])
    assert cfg.trainer.max_epochs == 7  # experiment over base
    assert cfg.data.batch_size == 16  # command line over experiment
    assert cfg.trainer.precision == "32-true"  # untouched base value
    assert cfg.experiment == "exp"  # named after the file unless it says otherwise


def test_unknown_key_names_key_and_file(exp_dir: Path) -> None:
    exp = write(exp_dir / "typo.yaml", "trainer:\n  max_epoch: 2\n")
    with pytest.raises(ConfigError, match=r"typo\.yaml.*trainer\.max_epoch"):
        compose(exp)


def test_unknown_override_names_command_line(exp_dir: Path) -> None:
    exp = write(exp_dir / "ok.yaml", "seed: 1\n")
    with pytest.raises(ConfigError, match=r"command line.*data\.nope"):
        compose(exp, ["data.nope=3"])


def test_wrong_type_names_key_and_file(exp_dir: Path) -> None:
    exp = write(exp_dir / "bad.yaml", "data:\n  batch_size: lots\n")
    with pytest.raises(ConfigError, match=r"bad\.yaml.*data\.batch_size"):
        compose(exp)


def test_bad_choice_is_blamed_on_the_layer_that_set_it(exp_dir: Path) -> None:
    exp = write(exp_dir / "prec.yaml", "trainer:\n  precision: fp8\n")
    with pytest.raises(ConfigError, match=r"prec\.yaml.*trainer\.precision"):
        compose(exp)
    ok = write(exp_dir / "ok.yaml", "seed: 1\n")
    with pytest.raises(ConfigError, match=r"command line.*trainer\.strategy"):
        compose(ok, ["trainer.strategy=horovod"])


def test_unknown_loss_term_is_an_error(exp_dir: Path) -> None:
    exp = write(exp_dir / "loss.yaml", "loss:\n  weights:\n    hard_cee: 1.0\n")
    with pytest.raises(ConfigError, match=r"loss\.yaml.*unknown loss term.*hard_cee"):
        compose(exp)


def test_path_dataset_needs_a_path(exp_dir: Path) -> None:
    exp = write(exp_dir / "p.yaml", "data:\n  kind: path\n")
    with pytest.raises(ConfigError, match=r"data\.path"):
        compose(exp)


def test_malformed_override_and_yaml(exp_dir: Path) -> None:
    ok = write(exp_dir / "ok.yaml", "seed: 1\n")
    with pytest.raises(ConfigError, match="key=value"):
        compose(ok, ["trainer.max_epochs"])
    broken = write(exp_dir / "broken.yaml", "trainer: [unclosed\n")
    with pytest.raises(ConfigError, match=r"broken\.yaml"):
        compose(broken)
    with pytest.raises(ConfigError, match="not found"):
        compose(exp_dir / "missing.yaml")


def test_composed_config_is_read_only(exp_dir: Path) -> None:
    cfg = compose(write(exp_dir / "ok.yaml", "seed: 1\n"))
    with pytest.raises(Exception):  # noqa: B017 - omegaconf's ReadonlyConfigError
        cfg.seed = 2


@pytest.mark.parametrize("digest", ["76e112215421", "168074578e09", "123456789012", "0012"])
def test_string_settings_keep_digits_and_exponents_as_written(digest: str) -> None:
    """A 12-hex-digit digest given as ``version=`` is a string even when YAML would read a float
    (inf, 1.68e+17) or an int; ``null`` still means None, and other types still parse."""
    quickstart = EXPERIMENTS / "quickstart.yaml"
    cfg = compose(quickstart, [f"version={digest}", f"data.teacher_cache={digest}", "seed=7"])
    assert cfg.version == digest and cfg.data.teacher_cache == digest and cfg.seed == 7
    assert compose(quickstart, ["version=null"]).version is None
    assert compose(quickstart, [f"version='{digest}'"]).version == digest
