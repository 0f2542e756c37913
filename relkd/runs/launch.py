"""Who this process is when N copies of ``relkd train`` run at once, and how they agree.

Two kinds of multi-process start exist:

- **Outside launchers** (torchrun, SLURM ``srun``) start every rank at the same moment. Without
  coordination each rank would resolve the dataset and pick a run version on its own and race
  (a rank finds the dataset half-built, or picks ``version_1`` while rank 0 made ``version_0``).
  Here global rank 0 does the work that writes (build the dataset, claim the run folder, build
  the tokenized store) while the other ranks wait in a broadcast, then take rank 0's answer, or
  raise rank 0's error, so no rank hangs when rank 0 refuses the input.
- **Lightning's own launcher** (``trainer.devices=2`` without torchrun) starts ranks 1..N-1
  inside ``trainer.fit``, after rank 0 prepared everything; they inherit the run version through
  ``RELKD_RUN_VERSION`` and need no broadcast.

The process group is created early, with the backend Lightning would choose (gloo on CPU, NCCL
for CUDA tensors), so Lightning's strategy finds it initialised and reuses it.
"""

from __future__ import annotations

import atexit
import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

import torch
import torch.distributed as dist

from relkd.errors import ConfigError, DataError, RelkdError, StaleArtifactError

T = TypeVar("T")
_ERRORS: dict[str, type[RelkdError]] = {
    c.__name__: c for c in (RelkdError, ConfigError, DataError, StaleArtifactError)
}


@dataclass(frozen=True)
class Launch:
    """This process's place in a launch; ``launcher`` is torchrun, slurm, lightning or single.

    ``rank`` is the global rank under torchrun and SLURM; under Lightning's own launcher it is
    only 0 (the process the user started) or positive (a rank Lightning started)."""

    launcher: str
    rank: int = 0
    world_size: int = 1

    @property
    def external(self) -> bool:
        """Started by torchrun or srun together with its peers (they must coordinate)."""
        return self.launcher in ("torchrun", "slurm") and self.world_size > 1

    @property
    def is_rank_zero(self) -> bool:
        return self.rank == 0


def detect_launch() -> Launch:
    """The launcher, read the way Lightning reads it (torchrun first, then SLURM)."""
    from lightning.fabric.plugins.environments import SLURMEnvironment, TorchElasticEnvironment

    if TorchElasticEnvironment.detect():
        env = TorchElasticEnvironment()
        return Launch("torchrun", env.global_rank(), env.world_size())
    if SLURMEnvironment.detect():
        env = SLURMEnvironment()
        return Launch("slurm", env.global_rank(), env.world_size())
    node = int(os.environ.get("NODE_RANK", "0"))
    local = int(os.environ.get("LOCAL_RANK", "0"))
    if "LOCAL_RANK" in os.environ or node > 0:  # Lightning's launcher, or a manual other node
        return Launch("lightning", 0 if node == local == 0 else 1 + local)
    return Launch("single")


def ensure_process_group(launch: Launch) -> None:
    """Join the job's process group now (env:// rendezvous) so ranks can broadcast before fit."""
    if dist.is_initialized():
        return
    from lightning.fabric.plugins.environments import SLURMEnvironment, TorchElasticEnvironment

    env = TorchElasticEnvironment() if launch.launcher == "torchrun" else SLURMEnvironment()
    os.environ["MASTER_ADDR"] = env.main_address
    os.environ["MASTER_PORT"] = str(env.main_port)
    backend = "cpu:gloo,cuda:nccl" if torch.cuda.is_available() else "gloo"
    dist.init_process_group(backend, rank=launch.rank, world_size=launch.world_size)
    atexit.register(_destroy)


def _destroy() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()


def rank_zero_first(launch: Launch, prepare: Callable[[], T]) -> T:
    """``prepare()`` on rank 0 only; every rank returns its result (or raises its error).

    A relkd error on rank 0 is re-raised with the same class and message on every rank, so each
    prints the same one-line error and exits instead of waiting forever for rank 0."""
    if not launch.external:
        return prepare()
    ensure_process_group(launch)
    message: list[object] = [None]
    if launch.is_rank_zero:
        try:
            message = [("ok", prepare())]
        except RelkdError as exc:
            message = [("error", type(exc).__name__, str(exc))]
            dist.broadcast_object_list(message, src=0)
            raise
        except BaseException as exc:
            message = [("crash", type(exc).__name__, f"rank 0 failed: {exc}")]
            dist.broadcast_object_list(message, src=0)
            raise
    dist.broadcast_object_list(message, src=0)
    reply = message[0]
    assert isinstance(reply, tuple)
    if reply[0] == "ok":
        return reply[1]  # type: ignore[no-any-return]
    if reply[0] == "error":
        raise _ERRORS.get(reply[1], RelkdError)(reply[2])
    raise RuntimeError(reply[2])


def check_launch(launch: Launch, trainer_cfg: object) -> None:
    """Refuse a launch whose process count is not ``trainer.devices × trainer.num_nodes``.

    Under SLURM this catches ``relkd train`` typed in an ``salloc`` shell of several tasks
    without ``srun``: this one process would otherwise wait forever for peers never started."""
    if not launch.external:
        return
    devices = getattr(trainer_cfg, "devices", None)
    nodes = int(getattr(trainer_cfg, "num_nodes", 1))
    if not isinstance(devices, int) or devices * nodes == launch.world_size:
        return
    what = "SLURM_NTASKS" if launch.launcher == "slurm" else "WORLD_SIZE"
    raise ConfigError(
        f"trainer.devices: {devices} x trainer.num_nodes {nodes} != {what} {launch.world_size} "
        f"({launch.launcher}); start one task per device (srun --ntasks-per-node=DEVICES, "
        "torchrun --nproc_per_node DEVICES)"
    )
