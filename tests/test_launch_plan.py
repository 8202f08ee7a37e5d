"""ctrg.launch: which mode and command line each environment gets (no processes started)."""

from __future__ import annotations

import sys

import pytest

from ctrg import launch

STAGE = ["stage1", "--config", "c.json", "--resume", "auto"]


def no_scontrol(job_id: str, key: str) -> str | None:
    raise AssertionError(f"scontrol must not be asked (job {job_id}, {key})")


def fake_scontrol(fields: dict[str, str]):
    asked: list[tuple[str, str]] = []

    def lookup(job_id: str, key: str) -> str | None:
        asked.append((job_id, key))
        return fields.get(key)

    return lookup, asked


def test_one_rank_outside_slurm_runs_the_command_directly():
    plan = launch.build_plan(1, STAGE, env={"PATH": "/bin"}, lookup=no_scontrol)
    assert plan.mode == "direct" and plan.ranks == 1
    assert plan.argv == [sys.executable, "-m", "ctrg", *STAGE]
    assert plan.env == {"PATH": "/bin"}


def test_zero_gpus_means_one_rank():
    plan = launch.build_plan(0, STAGE, env={}, lookup=no_scontrol)
    assert (plan.mode, plan.ranks) == ("direct", 1)


def test_several_ranks_on_one_node_use_torchrun_standalone():
    plan = launch.build_plan(4, STAGE, env={}, lookup=no_scontrol)
    assert plan.mode == "torchrun" and plan.ranks == 4
    assert plan.argv[:3] == [sys.executable, "-m", "torch.distributed.run"]
    assert "--standalone" in plan.argv and "--nproc-per-node=4" in plan.argv
    assert plan.argv[-len(STAGE) - 2 :] == ["--module", "ctrg", *STAGE]


def test_inside_snakemakes_single_task_step_torchrun_is_used():
    # Snakemake's job step runs the rule under `srun -n1`: a step with one task.
    env = {"SLURM_JOB_ID": "17", "SLURM_STEP_ID": "0", "SLURM_NTASKS": "1", "SLURM_PROCID": "0"}
    plan = launch.build_plan(2, STAGE, env=env, lookup=no_scontrol)
    assert plan.mode == "torchrun" and plan.ranks == 2


def test_multi_task_allocation_with_stripped_env_asks_scontrol_and_uses_srun():
    # Snakemake's MPI-style job step keeps only SLURM_JOB_ID: tasks and nodes come from scontrol.
    lookup, asked = fake_scontrol({"NumTasks": "8", "NodeList": "gpu01"})
    plan = launch.build_plan(8, STAGE, env={"SLURM_JOB_ID": "40123"}, lookup=lookup)
    assert plan.mode == "srun" and plan.ranks == 8
    assert ("40123", "NumTasks") in asked
    assert plan.argv[:4] == ["srun", "--ntasks=8", "--kill-on-bad-exit=1", "--export=ALL"]
    assert plan.argv[4:] == [
        sys.executable, "-m", "ctrg.launch", "--mode", "worker", "--module", "ctrg", "--", *STAGE
    ]  # fmt: skip
    assert plan.env["MASTER_ADDR"] == "gpu01"
    assert plan.env["MASTER_PORT"] == str(20000 + 40123 % 20000)  # 20123


def test_srun_uses_the_allocations_task_count_when_nproc_differs(caplog):
    env = {"SLURM_JOB_ID": "5", "SLURM_NTASKS": "3", "SLURM_JOB_NODELIST": "n1"}
    with caplog.at_level("WARNING"):
        plan = launch.build_plan(2, STAGE, env=env, lookup=no_scontrol)
    assert plan.mode == "srun" and plan.ranks == 3 and "--ntasks=3" in plan.argv
    assert "3 tasks but --nproc is 2" in caplog.text


def test_worker_maps_srun_task_variables_to_torchrun_variables():
    env = {
        "SLURM_JOB_ID": "9",
        "SLURM_STEP_ID": "1",
        "SLURM_PROCID": "5",
        "SLURM_NTASKS": "8",
        "SLURM_LOCALID": "1",
        "SLURM_NTASKS_PER_NODE": "4(x2)",
        "MASTER_ADDR": "n1",
        "MASTER_PORT": "20009",
    }
    plan = launch.build_plan(1, STAGE, env=env, lookup=no_scontrol)
    assert plan.mode == "worker" and plan.ranks == 8
    assert plan.argv == [sys.executable, "-m", "ctrg", *STAGE]
    assert (plan.env["RANK"], plan.env["WORLD_SIZE"], plan.env["LOCAL_RANK"]) == ("5", "8", "1")
    assert plan.env["LOCAL_WORLD_SIZE"] == "4"
    assert (plan.env["MASTER_ADDR"], plan.env["MASTER_PORT"]) == ("n1", "20009")


def test_explicit_modes_and_errors():
    assert launch.build_plan(1, STAGE, mode="torchrun", env={}).ranks == 1
    with pytest.raises(RuntimeError, match="SLURM_JOB_ID is not set"):
        launch.build_plan(2, STAGE, mode="srun", env={})
    with pytest.raises(ValueError, match="no ctrg command"):
        launch.build_plan(1, [], env={})
    with pytest.raises(ValueError, match="mode must be one of"):
        launch.build_plan(1, STAGE, mode="mpirun", env={})


def test_parse_args_needs_the_separator():
    options, command = launch.parse_args(["--nproc", "2", "--", "stage2", "--out", "x"])
    assert options.nproc == 2 and options.mode == "auto" and command == ["stage2", "--out", "x"]
    with pytest.raises(SystemExit, match="usage"):
        launch.parse_args(["--nproc", "2", "stage2"])
