"""Run a ``ctrg`` command with N ranks: directly, with torchrun on one node, or with srun.

Used by the training rules (``rules/stage1.smk``, ``rules/stage2.smk``)::

    python -m ctrg.launch --nproc {resources.gpu} -- stage1 --config ... --resume auto

The mode is chosen from the environment (``--mode auto``, the default):

- ``direct``: one rank (``--nproc`` 0 or 1 and not inside a multi-task SLURM allocation):
  the command replaces this process (``python -m ctrg COMMAND ...``).
- ``srun``: inside a SLURM batch allocation with more than one task (e.g. a multi-node job
  submitted with ``mpi: true``, ``nodes`` and ``tasks_per_node``): one ``srun`` step starts one
  rank per task on every node; each rank gets ``RANK``/``WORLD_SIZE``/``LOCAL_RANK`` and the
  rendezvous ``MASTER_ADDR`` (first node of the allocation) / ``MASTER_PORT`` (from the job
  id). The task count comes from ``SLURM_NTASKS`` or, when Snakemake's job step removed the
  ``SLURM_*`` variables, from ``scontrol show job``.
- ``torchrun``: otherwise, N > 1 ranks on this node with ``torch.distributed.run
  --standalone`` (a free local rendezvous port, so several jobs can share a node).
- ``worker`` (internal): the per-task side of ``srun`` mode; also taken automatically when
  this launcher itself was started by a multi-task ``srun`` (ranks already exist).

Training code reads the usual torchrun variables (``ctrg.train.distributed``); checkpoints
are written by rank 0 and ``--resume auto`` makes a requeued job continue from the last one.
"""

from __future__ import annotations

import argparse
import logging
import os
import shutil
import subprocess
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

log = logging.getLogger(__name__)

MODES = ("auto", "direct", "torchrun", "srun", "worker")


@dataclass
class Plan:
    """What to run: ``argv`` with ``env`` (the full environment), and why."""

    mode: str
    argv: list[str]
    env: dict[str, str] = field(default_factory=dict)
    ranks: int = 1


def scontrol_job_field(job_id: str, key: str) -> str | None:
    """One ``Key=Value`` field of ``scontrol show job -o JOB_ID`` (None when unavailable)."""
    if not shutil.which("scontrol"):
        return None
    try:
        done = subprocess.run(
            ["scontrol", "show", "job", "-o", job_id],
            capture_output=True,
            text=True,
            timeout=30,
            check=True,
        )
    except (subprocess.SubprocessError, OSError) as error:
        log.warning("scontrol show job %s failed: %s", job_id, error)
        return None
    for token in done.stdout.split():
        name, _, value = token.partition("=")
        if name == key:
            return value
    return None


def allocation_tasks(env: Mapping[str, str], lookup: Callable[[str, str], str | None]) -> int:
    """Number of tasks of the enclosing SLURM batch allocation (1 outside SLURM or in a step).

    Inside a job step (``SLURM_STEP_ID`` set, e.g. Snakemake's ``srun -n1``) new ranks must
    not be started with srun, so the answer is 1 there.
    """
    job_id = env.get("SLURM_JOB_ID")
    if not job_id or "SLURM_STEP_ID" in env:
        return 1
    if env.get("SLURM_NTASKS"):
        return int(env["SLURM_NTASKS"])
    value = lookup(job_id, "NumTasks")
    return int(value) if value and value.isdigit() else 1


def first_node(env: Mapping[str, str], lookup: Callable[[str, str], str | None]) -> str:
    """Host name of the first node of the allocation (the rendezvous host)."""
    nodelist = env.get("SLURM_JOB_NODELIST") or lookup(env["SLURM_JOB_ID"], "NodeList") or ""
    if nodelist and shutil.which("scontrol"):
        done = subprocess.run(
            ["scontrol", "show", "hostnames", nodelist], capture_output=True, text=True
        )
        if done.returncode == 0 and done.stdout.split():
            return done.stdout.split()[0]
    if nodelist and "[" not in nodelist:
        return nodelist.split(",")[0]
    raise RuntimeError(f"cannot find the first node of SLURM job {env.get('SLURM_JOB_ID')}")


def rendezvous_port(job_id: str) -> int:
    """The job's rendezvous port (same rule as ``ctrg.train.distributed``)."""
    return 20000 + int(job_id) % 20000


def launched_by_srun(env: Mapping[str, str]) -> bool:
    """True when this process is one task of a multi-task srun step (ranks already exist)."""
    return "SLURM_STEP_ID" in env and "SLURM_PROCID" in env and int(env.get("SLURM_NTASKS", 1)) > 1


def worker_env(env: Mapping[str, str]) -> dict[str, str]:
    """torchrun-style rank variables from an srun task's ``SLURM_*`` variables."""
    out = dict(env)
    out["RANK"] = env["SLURM_PROCID"]
    out["WORLD_SIZE"] = env["SLURM_NTASKS"]
    out["LOCAL_RANK"] = env.get("SLURM_LOCALID", "0")
    if "SLURM_NTASKS_PER_NODE" in env:
        out["LOCAL_WORLD_SIZE"] = env["SLURM_NTASKS_PER_NODE"].split("(")[0]
    out.setdefault("MASTER_ADDR", env.get("SLURM_LAUNCH_NODE_IPADDR", "127.0.0.1"))
    out.setdefault("MASTER_PORT", str(rendezvous_port(env.get("SLURM_JOB_ID", "0"))))
    return out


def choose_mode(nproc: int, env: Mapping[str, str], tasks: int) -> str:
    """``auto`` resolved: worker, srun, torchrun or direct."""
    if launched_by_srun(env):
        return "worker"
    if tasks > 1:
        return "srun"
    return "torchrun" if nproc > 1 else "direct"


def build_plan(
    nproc: int,
    command: list[str],
    mode: str = "auto",
    module: str = "ctrg",
    env: Mapping[str, str] | None = None,
    lookup: Callable[[str, str], str | None] = scontrol_job_field,
) -> Plan:
    """Decide how to run ``python -m MODULE COMMAND...`` with ``nproc`` ranks.

    Args:
        nproc: Ranks wanted (the rule's GPU count; 0 means one rank without a GPU).
        command: The ctrg command and its arguments, e.g. ``["stage1", "--config", ...]``.
        mode: One of ``MODES``; ``auto`` looks at the environment.
        module: Python module run by every rank (``ctrg``; tests use a probe module).
        env: Environment to inspect and pass on (default: ``os.environ``).
        lookup: ``(job_id, key) -> value`` from ``scontrol show job`` (injectable for tests).

    Returns:
        The plan; ``Plan.ranks`` is the number of processes that will run the command.
    """
    if not command:
        raise ValueError("no ctrg command given after '--'")
    env = dict(os.environ if env is None else env)
    nproc = max(int(nproc), 1)
    if mode == "auto":
        mode = choose_mode(nproc, env, allocation_tasks(env, lookup))
    target = [sys.executable, "-m", module, *command]
    if mode == "direct":
        return Plan("direct", target, env, 1)
    if mode == "worker":
        wenv = worker_env(env)
        return Plan("worker", target, wenv, int(wenv["WORLD_SIZE"]))
    if mode == "torchrun":
        argv = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nnodes=1"]
        argv += [f"--nproc-per-node={nproc}", "--max-restarts=0", "--module", module, *command]
        return Plan("torchrun", argv, env, nproc)
    if mode == "srun":
        return srun_plan(nproc, command, module, env, lookup)
    raise ValueError(f"mode must be one of {', '.join(MODES)}, got {mode!r}")


def srun_plan(
    nproc: int,
    command: list[str],
    module: str,
    env: dict[str, str],
    lookup: Callable[[str, str], str | None],
) -> Plan:
    """One srun step over the whole allocation; every task re-enters this module as a worker."""
    job_id = env.get("SLURM_JOB_ID")
    if not job_id:
        raise RuntimeError("--mode srun needs a SLURM allocation (SLURM_JOB_ID is not set)")
    tasks = allocation_tasks(env, lookup)
    if tasks != nproc:
        log.warning(
            "SLURM job %s has %d tasks but --nproc is %d: starting %d ranks (one per task)",
            job_id,
            tasks,
            nproc,
            tasks,
        )
    env = dict(env)
    env.setdefault("MASTER_ADDR", first_node(env, lookup))
    env.setdefault("MASTER_PORT", str(rendezvous_port(job_id)))
    argv = ["srun", f"--ntasks={tasks}", "--kill-on-bad-exit=1", "--export=ALL"]
    argv += [sys.executable, "-m", "ctrg.launch", "--mode", "worker", "--module", module]
    return Plan("srun", [*argv, "--", *command], env, tasks)


def parse_args(argv: list[str]) -> tuple[argparse.Namespace, list[str]]:
    """Split ``[options] -- COMMAND ARGS`` into the launcher's options and the command."""
    if "--" not in argv:
        raise SystemExit("usage: python -m ctrg.launch --nproc N [--mode M] -- COMMAND ARGS...")
    split = argv.index("--")
    parser = argparse.ArgumentParser(
        prog="python -m ctrg.launch", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--nproc", type=int, default=1, help="ranks (GPUs) wanted; default 1")
    parser.add_argument("--mode", choices=MODES, default="auto", help="how to start the ranks")
    parser.add_argument("--module", default="ctrg", help="python module each rank runs")
    parser.add_argument("--dry-run", action="store_true", help="print the plan, run nothing")
    return parser.parse_args(argv[:split]), argv[split + 1 :]


def main(argv: list[str] | None = None) -> int:
    """Build the plan and replace this process with it (``--dry-run``: log it only)."""
    from ctrg.runtime import setup_logging

    setup_logging()
    options, command = parse_args(sys.argv[1:] if argv is None else argv)
    plan = build_plan(options.nproc, command, options.mode, options.module)
    log.info("launch mode %s, %d rank(s): %s", plan.mode, plan.ranks, " ".join(plan.argv))
    if options.dry_run:
        return 0
    sys.stdout.flush()
    sys.stderr.flush()
    os.execvpe(plan.argv[0], plan.argv, plan.env)
    return 1  # not reached


if __name__ == "__main__":
    raise SystemExit(main())
