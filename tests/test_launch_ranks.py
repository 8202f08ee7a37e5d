"""ctrg.launch for real: processes started, ranks rendezvous (gloo on CPU), exit codes kept.

Run as a module (``python -m test_launch_ranks OUT_DIR [EXIT_CODE]``) this file is the probe
each rank executes: it joins the process group from the torchrun variables, all-reduces
``rank + 1`` and writes what it saw to ``OUT_DIR/rank-<RANK>.json``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent


def probe(out_dir: Path, exit_code: int) -> int:
    """One rank: rendezvous when WORLD_SIZE > 1, all-reduce, record, exit with exit_code."""
    import torch
    import torch.distributed as dist

    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    total = torch.tensor([rank + 1.0])
    if world > 1:
        dist.init_process_group("gloo", rank=rank, world_size=world)
        dist.all_reduce(total)
        dist.destroy_process_group()
    record = {
        "rank": rank,
        "world": world,
        "local_rank": int(os.environ.get("LOCAL_RANK", "0")),
        "sum": float(total.item()),
        "pid": os.getpid(),
    }
    (out_dir / f"rank-{rank}.json").write_text(json.dumps(record))
    return exit_code


def run_launcher(*args: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=f"{HERE}{os.pathsep}{os.environ.get('PYTHONPATH', '')}")
    for key in [k for k in env if k.startswith("SLURM_")]:
        env.pop(key)
    cmd = [sys.executable, "-m", "ctrg.launch", "--module", "test_launch_ranks", *args]
    return subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=120)


def records(out_dir: Path) -> list[dict]:
    return [json.loads(p.read_text()) for p in sorted(out_dir.glob("rank-*.json"))]


def test_torchrun_starts_two_ranks_that_rendezvous(tmp_path: Path):
    done = run_launcher("--nproc", "2", "--", str(tmp_path))
    assert done.returncode == 0, done.stderr[-3000:]
    assert "launch mode torchrun, 2 rank(s)" in done.stderr
    seen = records(tmp_path)
    assert [r["rank"] for r in seen] == [0, 1]
    assert {r["world"] for r in seen} == {2}
    assert sorted(r["local_rank"] for r in seen) == [0, 1]
    assert {r["sum"] for r in seen} == {3.0}  # (0 + 1) + (1 + 1)
    assert seen[0]["pid"] != seen[1]["pid"]


def test_direct_mode_runs_one_rank_and_keeps_the_exit_code(tmp_path: Path):
    done = run_launcher("--nproc", "1", "--", str(tmp_path), "3")
    assert done.returncode == 3, done.stderr[-3000:]
    assert "launch mode direct, 1 rank(s)" in done.stderr
    assert records(tmp_path) == [
        {"rank": 0, "world": 1, "local_rank": 0, "sum": 1.0, "pid": records(tmp_path)[0]["pid"]}
    ]


def test_a_failing_rank_fails_the_torchrun_launch(tmp_path: Path):
    done = run_launcher("--nproc", "2", "--", str(tmp_path), "5")
    assert done.returncode != 0
    assert len(records(tmp_path)) == 2


def test_dry_run_prints_the_plan_and_starts_nothing(tmp_path: Path):
    done = run_launcher("--nproc", "3", "--dry-run", "--", str(tmp_path))
    assert done.returncode == 0
    assert "--nproc-per-node=3" in done.stderr
    assert not list(tmp_path.iterdir())


if __name__ == "__main__":
    raise SystemExit(probe(Path(sys.argv[1]), int(sys.argv[2]) if len(sys.argv) > 2 else 0))
