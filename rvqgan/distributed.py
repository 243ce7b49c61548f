"""torchrun's environment in one place: which process this is, and the process group's life.

`torchrun` starts one process per rank and tells each who it is through environment variables
(`WORLD_SIZE`, `RANK`, `LOCAL_RANK`, and `MASTER_ADDR`/`MASTER_PORT` for the rendezvous).
`read_ranks` parses and checks them (a plain `python` run is rank 0 of 1), `init_distributed`
starts the process group when there is more than one rank, and `close_distributed` ends it.
Training and tokenizing both go through here; this module imports only torch and the
standard library.
"""

from __future__ import annotations

import datetime
import os
from collections.abc import Mapping
from dataclasses import dataclass

import torch.distributed as dist


class DistributedError(ValueError):
    """torchrun's environment is inconsistent or unreadable; one line naming the variable."""


@dataclass(frozen=True)
class Ranks:
    """This process's place in the run: `rank` of `world_size` processes, `local_rank` on its machine (its GPU)."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def distributed(self) -> bool:
        """Whether there is more than one process, so a process group is needed."""
        return self.world_size > 1


def _integer(environ: Mapping[str, str], name: str, default: int, minimum: int) -> int:
    """The integer in `environ[name]` (`default` when unset or blank), at least `minimum`; DistributedError otherwise."""
    text = environ.get(name, "").strip()
    if not text:
        return default
    try:
        value = int(text)
    except ValueError:
        raise DistributedError(f"{name}={text!r} is not an integer (torchrun sets it; unset it to run one process)") from None
    if value < minimum:
        raise DistributedError(f"{name}={value} must be at least {minimum}")
    return value


def read_ranks(environ: Mapping[str, str] | None = None) -> Ranks:
    """This process's `Ranks` from torchrun's variables in `environ` (default `os.environ`); rank 0 of 1 outside torchrun.

    Checked before any process group is started, so that a bad launch fails with a line naming
    the variable instead of hanging in a rendezvous or training with the wrong rank.
    """
    env = os.environ if environ is None else environ
    world_size = _integer(env, "WORLD_SIZE", 1, 1)
    rank = _integer(env, "RANK", 0, 0)
    local_rank = _integer(env, "LOCAL_RANK", 0, 0)
    if rank >= world_size:
        raise DistributedError(f"RANK={rank} is not below WORLD_SIZE={world_size}")
    if world_size > 1:
        for name in ("MASTER_ADDR", "MASTER_PORT"):
            if not env.get(name, "").strip():
                raise DistributedError(f"WORLD_SIZE={world_size} but {name} is not set; start the ranks with torchrun")
    return Ranks(rank, world_size, local_rank)


def init_distributed(backend: str, timeout: datetime.timedelta | None = None) -> Ranks:
    """This process's `Ranks`, with the process group started (`backend`: "nccl" or "gloo") when there are several.

    A group already started (by the caller, or an earlier call) is kept. `timeout` bounds every
    collective; None keeps torch's default for the backend.
    """
    ranks = read_ranks()
    if ranks.distributed and not dist.is_available():
        raise DistributedError(f"WORLD_SIZE={ranks.world_size}, but this torch is built without torch.distributed")
    if ranks.distributed and not dist.is_initialized():
        if timeout is None:
            dist.init_process_group(backend)
        else:
            dist.init_process_group(backend, timeout=timeout)
    return ranks


def barrier() -> None:
    """Wait until every rank gets here; nothing to wait for without a process group."""
    if dist.is_available() and dist.is_initialized():
        dist.barrier()


def close_distributed() -> None:
    """End the process group if one is started (safe to call in any case, e.g. in a `finally`)."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()
