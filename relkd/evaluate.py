"""``relkd eval RUN_DIR [--data DIR] [--split S] [--ckpt best|last|PATH] [--perturb KINDS]``:
re-evaluate a run.

The student or teacher (the config's ``task``) is rebuilt from the run's saved config.yaml and
its checkpoint; the threshold is
tuned on the dataset's val split (when it has one) and applied to the requested split. Results
go to ``RUN_DIR/eval/<dataset>-<split>/metrics.json`` and never overwrite the run's own metrics.

With ``--perturb typo,synonym,...`` the test split is evaluated clean, then once per kind on a
derived copy of the dataset whose test queries are perturbed (relkd/perturb/, built once and
reused); val stays clean, so every evaluation applies the same val-tuned threshold. The
comparison goes to ``RUN_DIR/eval/<dataset>-test-perturb/metrics.json`` (docs/robustness.md).
"""

from __future__ import annotations

import copy
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import lightning as L
from omegaconf import DictConfig, OmegaConf

from relkd.artifacts.atomic_files import atomic_write_json
from relkd.artifacts.checkpoint_file import check_state_fits, checkpoint_state
from relkd.config import compose, to_container
from relkd.data.canonical_dataset import CanonicalDataset
from relkd.data.label_scheme import LabelScheme
from relkd.errors import ConfigError, DataError, RelkdError
from relkd.runs.dataset_resolver import resolve_dataset
from relkd.runs.run_dir import checkpoint_path
from relkd.runs.run_report import RunReport
from relkd.runs.run_setup import setup_run

# Data settings that read the teacher cache, which is keyed to the source dataset's tables and
# only feeds the loss: a perturbed copy of the dataset is evaluated without them.
DETACHED_DATA: dict[str, Any] = {
    "teacher_cache": None,
    "include_unlabeled": False,
    "pool_ratio": None,
    "with_cot": False,
    "with_hidden": False,
}


def evaluate_run(
    run_dir: str | Path,
    data: str | Path | None = None,
    split: str = "test",
    ckpt: str = "best",
    perturb: Sequence[str] | str | None = (),
    perturb_seed: int = 0,
) -> dict[str, Any]:
    """Evaluate a run's checkpoint; returns the metrics.json payload it wrote.

    Args:
        perturb: perturbation kinds (relkd.perturb.KINDS, a list or ``"a,b"``); when given,
            returns the robustness report instead (relkd/perturb/robustness_report.py). An
            empty string or an unknown kind is a ConfigError; None or ``()``: no perturbation.
        perturb_seed: picks another deterministic variant of every perturbation.
    """
    run_dir = Path(run_dir)
    config_path = run_dir / "config.yaml"
    if not config_path.is_file():
        raise ConfigError(f"{config_path}: not found; is {run_dir} a relkd run folder?")
    kinds: tuple[str, ...] = ()
    if perturb is not None and (isinstance(perturb, str) or len(perturb)):
        from relkd.perturb import parse_kinds

        kinds = parse_kinds(perturb)
        if split != "test":
            raise ConfigError(
                f"--perturb: perturbs the test queries; use --split test, not {split}"
            )
    overrides = ["trainer.devices=1", "trainer.strategy=auto", "trainer.num_nodes=1"]
    cfg = compose(config_path, overrides, with_base=False)
    path = checkpoint_path(run_dir, ckpt)
    state = checkpoint_state(path)  # refuse a foreign, truncated or unsafe file up front
    if data is not None:
        run_scheme = _run_scheme(cfg)
        cfg = compose(config_path, [*overrides, "data.kind=path", f"data.path={data}"], False)
    data_dir = resolve_dataset(cfg.data, build=False)
    dataset = CanonicalDataset(data_dir)
    if data is not None:
        _check_scheme(run_scheme, data_dir, dataset, run_dir)
    metrics = _evaluate(cfg, path, state, data_dir, dataset, split, run_dir / "eval")
    if not kinds:
        return metrics
    return _evaluate_perturbed(
        cfg, path, state, data_dir, dataset, kinds, perturb_seed, run_dir, metrics
    )


def _run_scheme(cfg: DictConfig) -> LabelScheme | None:
    """The label scheme of the dataset the run was trained on; None when it is gone."""
    try:
        return CanonicalDataset(resolve_dataset(cfg.data, build=False)).scheme
    except RelkdError:
        return None


def _check_scheme(
    run_scheme: LabelScheme | None, data_dir: Path, dataset: CanonicalDataset, run_dir: Path
) -> None:
    """``--data`` must share the run's label scheme: a head trained on ESCI's four labels cannot
    score WANDS' three (load_state_dict would fail with a size-mismatch traceback)."""
    scheme = dataset.scheme
    if run_scheme is None or run_scheme.name == scheme.name:
        return
    raise DataError(
        f"{data_dir / 'manifest.json'}: --data: field label_scheme is {scheme.name} "
        f"({len(scheme.labels)} labels), but run {run_dir} was trained on {run_scheme.name} "
        f"({len(run_scheme.labels)} labels); pass a --data dataset with the {run_scheme.name} label scheme"
    )


def _evaluate(
    cfg: DictConfig,
    path: Path,
    state: dict[str, Any],
    data_dir: Path,
    dataset: CanonicalDataset,
    split: str,
    eval_dir: Path,
    source_dir: Path | None = None,
) -> dict[str, Any]:
    """Test ``path`` on ``split`` of ``data_dir`` (threshold tuned on its val split); writes
    ``eval_dir/<dataset>-<split>/metrics.json`` and returns its payload.

    ``source_dir`` (a perturbed copy's source): the data settings that read the teacher cache
    are switched off, and a student's tokenizer and module come from the run's own dataset and
    config (so a vocabulary trained on the data, and loss layers sized from the teacher cache,
    are the checkpoint's), while its batches come from ``data_dir``.
    """
    tables_read = dataset.verify()  # refuse a table edited since its manifest was written
    splits = ("val", split) if split != "val" else ("val",)
    data_cfg = cfg if source_dir is None else _detached(cfg)
    if source_dir is not None and cfg.task != "teacher":
        from relkd.runs.run_setup import student_name
        from relkd.runs.student_factory import build_datamodule, build_student, encoder_spec

        spec = encoder_spec(cfg, source_dir)
        module = build_student(cfg, spec, dataset.scheme, splits, source_dir)
        dm = build_datamodule(data_cfg, data_dir, spec)
        name = student_name(cfg.model, spec)
    else:
        setup = setup_run(data_cfg, data_dir, dataset, splits)
        dm, module, name = setup.datamodule, setup.module, setup.name
    dm.test_splits = splits
    target = f"the {name} built for {data_dir} ({dataset.scheme.name} labels)"
    check_state_fits(path, state, module.state_dict(), target)
    out = eval_dir / f"{data_dir.name}-{split}" / "metrics.json"
    extra = {"checkpoint": str(path), "dataset": str(data_dir), "tables_read": tables_read}
    report = RunReport(out, to_container(data_cfg), extra=extra)
    trainer = L.Trainer(
        accelerator=cfg.trainer.accelerator,
        devices=1,
        precision=cfg.trainer.precision,
        logger=False,
        callbacks=[report],
        enable_progress_bar=cfg.trainer.enable_progress_bar,
        use_distributed_sampler=False,
    )
    trainer.test(module, datamodule=dm, ckpt_path=str(path), verbose=False, weights_only=True)
    metrics = json.loads(out.read_text())
    from relkd.metrics.report import format_metrics_table

    print(f"checkpoint: {path}\nmetrics: {out}")
    if source_dir is None:
        print(format_metrics_table({f"{name} ({split})": metrics[split]}))
        if "cot" in metrics[split]:
            print(f"CoT: {json.dumps(metrics[split]['cot'], sort_keys=True)}")
    return metrics


def _detached(cfg: DictConfig) -> DictConfig:
    """``cfg`` with :data:`DETACHED_DATA` applied. Not re-validated: compose refuses
    ``data.teacher_cache=null`` for a distilled student, whose loss needs the cache, but
    evaluation never computes the loss."""
    out = copy.deepcopy(cfg)
    OmegaConf.set_readonly(out, False)
    for key, value in DETACHED_DATA.items():
        out.data[key] = value
    OmegaConf.set_readonly(out, True)
    return out


def _evaluate_perturbed(
    cfg: DictConfig,
    path: Path,
    state: dict[str, Any],
    data_dir: Path,
    dataset: CanonicalDataset,
    kinds: tuple[str, ...],
    seed: int,
    run_dir: Path,
    clean: dict[str, Any],
) -> dict[str, Any]:
    """Evaluate each kind's perturbed copy of ``dataset``; write and print the comparison."""
    from relkd.perturb import PerturbedDataset, format_robustness_table, robustness_report

    results = {}
    for kind in kinds:
        derived = PerturbedDataset.open_or_build(dataset, kind, cfg.data.dataset_root, seed=seed)
        verb = "built" if derived.built else "reused"
        print(
            f"{kind}: {verb} {derived.root} ({derived.changed} of {derived.queries} test queries "
            "changed)"
        )
        metrics = _evaluate(
            cfg,
            path,
            state,
            derived.root,
            derived.dataset,
            "test",
            run_dir / "eval",
            source_dir=data_dir,
        )
        results[kind] = (metrics["test"], derived)
    extra = {"checkpoint": str(path), "dataset": str(data_dir)}
    report = robustness_report(clean["test"], results, seed=seed, extra=extra)
    out = run_dir / "eval" / f"{data_dir.name}-test-perturb" / "metrics.json"
    atomic_write_json(out, report)
    print(f"robustness: {out}")
    print(format_robustness_table(report))
    return report
