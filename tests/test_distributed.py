"""torchrun's environment: parsing, checks, and the process group's start and end."""

from __future__ import annotations

import datetime
import os
import socket
import subprocess
import sys

import pytest
import torch.distributed as dist
from conftest import ROOT

from rvqgan.distributed import DistributedError, Ranks, barrier, close_distributed, init_distributed, read_ranks

TORCHRUN = {"WORLD_SIZE": "4", "RANK": "2", "LOCAL_RANK": "1", "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": "29500"}
VARIABLES = ("WORLD_SIZE", "RANK", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")


@pytest.fixture
def plain_env(monkeypatch):
    """A process started without torchrun."""
    for name in VARIABLES:
        monkeypatch.delenv(name, raising=False)
    return monkeypatch


def test_outside_torchrun_a_process_is_rank_0_of_1():
    ranks = read_ranks({})
    assert ranks == Ranks(0, 1, 0) and not ranks.distributed


def test_torchrun_variables_are_read():
    ranks = read_ranks(TORCHRUN)
    assert (ranks.rank, ranks.world_size, ranks.local_rank) == (2, 4, 1) and ranks.distributed


def test_the_process_environment_is_the_default(plain_env):
    assert read_ranks() == Ranks()
    for name, value in TORCHRUN.items():
        plain_env.setenv(name, value)
    assert read_ranks() == Ranks(2, 4, 1)


def test_a_world_of_one_needs_no_rendezvous():
    assert read_ranks({"WORLD_SIZE": "1", "RANK": "0", "LOCAL_RANK": " 0 "}) == Ranks()


@pytest.mark.parametrize(
    "change, message",
    [
        ({"WORLD_SIZE": "two"}, "WORLD_SIZE='two' is not an integer"),
        ({"WORLD_SIZE": "0"}, "WORLD_SIZE=0 must be at least 1"),
        ({"RANK": "1.5"}, "RANK='1.5' is not an integer"),
        ({"RANK": "-1"}, "RANK=-1 must be at least 0"),
        ({"RANK": "4"}, "RANK=4 is not below WORLD_SIZE=4"),
        ({"LOCAL_RANK": "gpu0"}, "LOCAL_RANK='gpu0' is not an integer"),
        ({"MASTER_ADDR": ""}, "WORLD_SIZE=4 but MASTER_ADDR is not set"),
        ({"MASTER_PORT": " "}, "WORLD_SIZE=4 but MASTER_PORT is not set"),
        ({"WORLD_SIZE": "1", "RANK": "1"}, "RANK=1 is not below WORLD_SIZE=1"),
    ],
)
def test_bad_values_are_one_line_errors_naming_the_variable(change, message):
    with pytest.raises(DistributedError, match=message) as info:
        read_ranks({**TORCHRUN, **change})
    assert "\n" not in str(info.value)
    assert isinstance(info.value, ValueError)  # the CLI reports ValueErrors as one line


def test_a_single_process_starts_no_process_group(plain_env):
    assert init_distributed("gloo") == Ranks()
    assert not dist.is_initialized()
    barrier()  # nothing to wait for
    close_distributed()  # nothing to close


def test_several_ranks_start_the_group_once_with_the_timeout(plain_env):
    for name, value in TORCHRUN.items():
        plain_env.setenv(name, value)
    calls = []
    started = [False]

    def init_process_group(backend, **kwargs):
        calls.append((backend, kwargs))
        started[0] = True

    plain_env.setattr(dist, "init_process_group", init_process_group)
    plain_env.setattr(dist, "is_initialized", lambda: started[0])
    timeout = datetime.timedelta(hours=3)
    assert init_distributed("gloo", timeout=timeout) == Ranks(2, 4, 1)
    assert init_distributed("gloo", timeout=timeout) == Ranks(2, 4, 1)  # a started group is kept
    assert calls == [("gloo", {"timeout": timeout})]


def test_no_timeout_keeps_the_backend_default(plain_env):
    for name, value in TORCHRUN.items():
        plain_env.setenv(name, value)
    calls = []
    plain_env.setattr(dist, "init_process_group", lambda backend, **kwargs: calls.append((backend, kwargs)))
    plain_env.setattr(dist, "is_initialized", lambda: False)
    init_distributed("nccl")
    assert calls == [("nccl", {})]


def test_a_bad_environment_fails_before_any_rendezvous(plain_env):
    for name, value in {**TORCHRUN, "RANK": "7"}.items():
        plain_env.setenv(name, value)
    plain_env.setattr(dist, "init_process_group", lambda *a, **k: pytest.fail("a group was started"))
    with pytest.raises(DistributedError, match="RANK=7"):
        init_distributed("gloo")


# Two real ranks: each starts the group from the environment, sums its rank + 1 with the other's,
# passes a barrier and closes the group.
RANK_SCRIPT = """
import torch, torch.distributed as dist
from rvqgan.distributed import barrier, close_distributed, init_distributed
ranks = init_distributed("gloo")
total = torch.tensor([ranks.rank + 1.0])
dist.all_reduce(total)
barrier()
close_distributed()
print(ranks.rank, ranks.world_size, ranks.local_rank, int(total.item()), dist.is_initialized())
"""


@pytest.mark.slow
def test_two_ranks_meet_through_the_environment():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    procs = []
    for rank in range(2):
        env = {**os.environ, "OMP_NUM_THREADS": "1", "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port)}
        env.update(WORLD_SIZE="2", RANK=str(rank), LOCAL_RANK=str(rank))
        procs.append(subprocess.Popen([sys.executable, "-c", RANK_SCRIPT], cwd=ROOT, env=env, stdout=subprocess.PIPE, text=True))
    outputs = [p.communicate(timeout=300)[0].strip() for p in procs]
    assert [p.returncode for p in procs] == [0, 0]
    assert outputs == ["0 2 0 3 False", "1 2 1 3 False"]
