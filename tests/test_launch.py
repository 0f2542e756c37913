"""Outside launchers: torchrun starts every rank at once; rank 0 alone builds the dataset, the
tokenized store and the run folder while the others wait, and a refusal on rank 0 reaches every
rank as the same one-line error. Also the launcher detection and the FSDP wrap policy."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path
from typing import ClassVar

import pytest
from torch import nn

from relkd.errors import ConfigError
from relkd.runs.fsdp_strategy import block_classes, build_strategy
from relkd.runs.launch import Launch, check_launch, detect_launch, rank_zero_first
from tests.conftest import QUICKSTART, REPO, tiny_overrides
from tests.test_ddp import clean_env

SLURM_VARS = (
    "SLURM_NTASKS",
    "SLURM_NTASKS_PER_NODE",
    "SLURM_PROCID",
    "SLURM_LOCALID",
    "SLURM_JOB_NAME",
    "SLURM_NODELIST",
)


def torchrun(args: list[str], tmp: Path, port: int) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in clean_env().items() if not k.startswith("SLURM_")}
    env["OMP_NUM_THREADS"] = "1"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2"]
    cmd += ["--master_addr", "127.0.0.1", "--master_port", str(port)]
    cmd += ["-m", "relkd.cli", *args]
    return subprocess.run(
        cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=300, check=False
    )


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_torchrun_ranks_share_one_dataset_store_and_run_folder(tmp_path: Path) -> None:
    # A fresh data root: the dataset and its tokenized store do not exist when both ranks start.
    args = tiny_overrides(
        tmp_path / "runs",
        tmp_path / "data",
        **{
            "trainer.devices": 2,
            "trainer.strategy": "ddp",
            "data.synthetic.pairs": 600,
            "early_stopping.enabled": False,
        },
    )
    proc = torchrun(["train", str(QUICKSTART), *args], tmp_path, free_port())
    assert proc.returncode == 0, proc.stderr[-4000:]
    runs = sorted(p.name for p in (tmp_path / "runs" / "quickstart").iterdir())
    assert runs == ["version_0"]  # rank 1 did not pick a version of its own
    datasets = list((tmp_path / "data" / "datasets").iterdir())
    assert len(datasets) == 1 and (datasets[0] / "manifest.json").is_file()
    stores = [p for p in (tmp_path / "data" / "tokenized").iterdir() if p.is_dir()]
    assert len(stores) == 1  # built once, not once per rank
    metrics = json.loads(
        (tmp_path / "runs" / "quickstart" / "version_0" / "metrics.json").read_text()
    )
    assert metrics["global_step"] > 0 and metrics["test"]["num_pairs"] > 0


def test_torchrun_rank_zero_refusal_reaches_every_rank(tmp_path: Path) -> None:
    missing = tmp_path / "no_such_dataset"
    args = tiny_overrides(
        tmp_path / "runs",
        tmp_path / "data",
        **{"trainer.devices": 2, "trainer.strategy": "ddp", "data.kind": "path"},
    )
    proc = torchrun(
        ["train", str(QUICKSTART), *args, f"data.path={missing}"], tmp_path, free_port()
    )
    assert proc.returncode != 0
    errors = [line for line in proc.stderr.splitlines() if line.startswith("relkd: error:")]
    assert len(errors) == 2 and errors[0] == errors[1]  # both ranks, one line each, no hang
    assert str(missing) in errors[0]
    # torchrun then reports the failed children with a traceback of its own; the ranks did not
    ranks_output = proc.stderr.split("torch/distributed/elastic")[0]
    assert "Traceback" not in ranks_output
    assert re.search(r"exitcode\s*:\s*2\b", proc.stderr)
    assert not (tmp_path / "runs").exists()


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({}, Launch("single")),
        (
            {
                "TORCHELASTIC_RUN_ID": "x",
                "RANK": "3",
                "WORLD_SIZE": "4",
                "LOCAL_RANK": "1",
                "GROUP_RANK": "1",
                "MASTER_ADDR": "h",
                "MASTER_PORT": "1",
            },
            Launch("torchrun", 3, 4),
        ),
        (
            {
                "SLURM_NTASKS": "8",
                "SLURM_PROCID": "5",
                "SLURM_LOCALID": "1",
                "SLURM_JOB_NAME": "relkd",
                "SLURM_NTASKS_PER_NODE": "4",
                "SLURM_NODELIST": "node[1-2]",
            },
            Launch("slurm", 5, 8),
        ),
        ({"SLURM_NTASKS": "8", "SLURM_PROCID": "5", "SLURM_JOB_NAME": "bash"}, Launch("single")),
        ({"LOCAL_RANK": "1"}, Launch("lightning", 2)),
        ({"LOCAL_RANK": "0"}, Launch("lightning", 0)),
        ({"NODE_RANK": "1"}, Launch("lightning", 1)),
    ],
)
def test_detect_launch_reads_the_launcher(
    monkeypatch: pytest.MonkeyPatch, env: dict[str, str], expected: Launch
) -> None:
    for key in (
        *SLURM_VARS,
        "TORCHELASTIC_RUN_ID",
        "RANK",
        "WORLD_SIZE",
        "LOCAL_RANK",
        "GROUP_RANK",
        "NODE_RANK",
    ):
        monkeypatch.delenv(key, raising=False)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    launch = detect_launch()
    assert launch == expected
    assert launch.external == (expected.launcher in ("torchrun", "slurm"))


def test_a_launch_of_the_wrong_size_is_refused_not_left_waiting() -> None:
    from types import SimpleNamespace

    two = SimpleNamespace(devices=2, num_nodes=1)
    check_launch(Launch("torchrun", 1, 2), two)
    check_launch(Launch("single"), two)  # Lightning starts the second rank itself
    check_launch(Launch("slurm", 0, 4), SimpleNamespace(devices="auto", num_nodes=1))
    with pytest.raises(ConfigError, match=r"trainer\.devices: 2 x .* != SLURM_NTASKS 4"):
        check_launch(Launch("slurm", 0, 4), two)


def test_rank_zero_first_without_outside_launcher_just_runs() -> None:
    calls: list[int] = []
    assert rank_zero_first(Launch("lightning", 2), lambda: calls.append(1) or 7) == 7
    assert calls == [1]


class _Block(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.lin = nn.Linear(2, 2)


class _Named(nn.Module):
    _no_split_modules: ClassVar[list[str]] = ["_Block"]

    def __init__(self) -> None:
        super().__init__()
        self.blocks = nn.ModuleList([_Block(), _Block()])
        self.heads = nn.ModuleList([nn.Linear(2, 2)])


def test_fsdp_wraps_the_named_block_else_the_longest_uniform_module_list() -> None:
    assert block_classes(_Named()) == {_Block}
    unnamed = nn.Sequential(nn.ModuleList([nn.Linear(2, 2)] * 3), nn.ModuleList([_Block()]))
    assert block_classes(unnamed) == {nn.Linear}
    assert block_classes(nn.Linear(2, 2)) == set()


def test_fsdp_strategy_is_lora_compatible_and_follows_the_config() -> None:
    from lightning.pytorch.strategies import FSDPStrategy
    from omegaconf import OmegaConf

    t = OmegaConf.create(
        {
            "strategy": "fsdp",
            "accelerator": "gpu",
            "fsdp": {
                "sharding_strategy": "SHARD_GRAD_OP",
                "activation_checkpointing": True,
                "cpu_offload": False,
            },
        }
    )
    strategy = build_strategy(t, _Named())
    assert isinstance(strategy, FSDPStrategy)
    assert strategy.kwargs["use_orig_params"] is True
    assert strategy._state_dict_type == "full"
    assert str(strategy.sharding_strategy).endswith("SHARD_GRAD_OP")
    assert strategy._activation_checkpointing_kwargs  # the blocks are recomputed in backward
    t.strategy = "ddp"
    assert build_strategy(t, _Named()) == "ddp"
    t.strategy = "fsdp"
    with pytest.raises(ConfigError, match=r"trainer\.strategy: fsdp found no"):
        build_strategy(t, nn.Linear(2, 2))
    t.accelerator = "cpu"
    with pytest.raises(ConfigError, match=r"trainer\.strategy: fsdp needs GPUs"):
        build_strategy(t, _Named())


def test_fsdp_wraps_each_decoder_layer_of_the_lora_teacher() -> None:
    from omegaconf import OmegaConf
    from peft import LoraConfig, get_peft_model

    from relkd.nets.causal_lm_presets import resolve_causal_lm

    cfg = OmegaConf.create({"model": "minilm-causal", "trust_remote_code": False, "revision": None})
    lm, _ = resolve_causal_lm(cfg).build()
    lora = get_peft_model(lm, LoraConfig(r=4, target_modules=["query", "value"]))
    # the classes the model itself names as unsplittable (transformers 5: embeddings and layers)
    names = {b.__name__ for b in block_classes(lora)}
    assert "BertLayer" in names and names <= {"BertLayer", "BertEmbeddings"}
    layers = [m for m in lora.modules() if type(m).__name__ == "BertLayer"]
    assert len(layers) == 6  # MiniLM-L6: one FSDP unit per decoder layer


@pytest.mark.slow
def test_srun_style_ranks_share_one_dataset_and_run_folder(tmp_path: Path) -> None:
    """The SLURM path without SLURM: two processes with the variables ``srun`` sets."""
    args = tiny_overrides(
        tmp_path / "runs",
        tmp_path / "data",
        **{"trainer.devices": 2, "trainer.strategy": "ddp", "data.synthetic.pairs": 600},
    )
    base = {k: v for k, v in clean_env().items() if not k.startswith("SLURM_")}
    base |= {
        "OMP_NUM_THREADS": "1",
        "SLURM_NTASKS": "2",
        "SLURM_NTASKS_PER_NODE": "2",
        "SLURM_NODEID": "0",
        "SLURM_JOB_NAME": "relkd",
        "SLURM_JOB_ID": "4242",
        "SLURM_NODELIST": "localhost",
        "MASTER_PORT": str(free_port()),
    }
    cmd = [sys.executable, "-m", "relkd.cli", "train", str(QUICKSTART), *args]
    procs = [
        subprocess.Popen(
            cmd,
            cwd=REPO,
            env=base | {"SLURM_PROCID": str(r), "SLURM_LOCALID": str(r)},
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        for r in (0, 1)
    ]
    errs = [p.communicate(timeout=300)[1] for p in procs]
    assert [p.returncode for p in procs] == [0, 0], errs[0][-3000:] + errs[1][-3000:]
    assert [p.name for p in (tmp_path / "runs" / "quickstart").iterdir()] == ["version_0"]
    assert len(list((tmp_path / "data" / "datasets").iterdir())) == 1
