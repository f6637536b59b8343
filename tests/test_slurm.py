"""``pretrain --slurm``: the spec, and a submission through submitit's LocalExecutor (offline) that is preempted,
requeued and resumes exactly."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import pytest
import torch

from fixtures_shards import shard_recipe, tar_dataset


def test_slurm_spec_is_parsed_and_checked():
    from lejepa_domains.errors import UserError
    from lejepa_domains.train.slurm import parse_slurm_spec

    assert parse_slurm_spec("nodes=2,gpus_per_node=8,partition=gpu,time=1-02:30:00") == {
        "nodes": 2, "gpus_per_node": 8, "partition": "gpu", "timeout_min": 1590.0}
    assert parse_slurm_spec("time=90,executor=local")["timeout_min"] == 90.0
    for bad, msg in (("nodes=two", "expected an integer"), ("gpus=8", "unknown key 'gpus'"),
                     ("nodes", "not KEY=VALUE"), ("time=soon", "expected minutes"), ("nodes=0", ">= 1"),
                     ("executor=pbs", "expected slurm, local or debug")):
        with pytest.raises(UserError, match=msg):
            parse_slurm_spec(bad)


@pytest.mark.slow
def test_local_executor_job_is_preempted_requeued_and_resumes_exactly(tmp_path, monkeypatch):
    """A streamed run submitted with executor=local gets the preemption signal (USR2) after its first mid-epoch
    checkpoint; submitit requeues it, the job resumes from the run folder, and it ends with the weights of the same
    run trained in one go."""
    from lejepa_domains import pretrain
    from lejepa_domains.train.slurm import submit_pretrain

    monkeypatch.setenv("LEJEPA_DOMAINS_DATA_CACHE", str(tmp_path / "cache"))
    recipe = shard_recipe(tmp_path / "shardtest.py", tar_dataset(tmp_path / "shards", n_train=32, per_shard=4,
                                                                 n_eval=8))
    opts = {"device": "cpu", "epochs": 3, "stream": True, "checkpoint_every": 2}
    job = submit_pretrain("executor=local,time=60", str(recipe), {**opts, "out": str(tmp_path / "run")})
    ck = tmp_path / "run" / "checkpoint.pt"
    t0 = time.time()
    while not ck.is_file() and time.time() - t0 < 300:
        time.sleep(0.2)
    assert ck.is_file()
    # what Slurm sends the job's tasks before preempting it / at the time limit (signal_delay_s before the end):
    # USR2 to the task process (a child of submitit's local controller)
    ctl = job._process.pid
    tasks = [int(p) for p in Path(f"/proc/{ctl}/task/{ctl}/children").read_text().split()]
    assert tasks
    for pid in tasks:
        os.kill(pid, signal.SIGUSR2)
    assert job.result() == str(tmp_path / "run")
    log = "".join(p.read_text() for p in (tmp_path / "run" / "slurm").glob("*_log.err"))
    assert "Caught signal SIGUSR2" in log and "preempted" in log, log
    assert log.count("data: stream") == 2, log  # started, requeued, started again (and resumed: weights below)
    ref = pretrain(str(recipe), out=tmp_path / "ref", progress=False, **opts)
    a = torch.load(ck, weights_only=False)
    b = torch.load(ref.run_dir / "checkpoint.pt", weights_only=False)
    assert a["step"] == b["step"] == 12
    for k in b["model"]:
        torch.testing.assert_close(a["model"][k], b["model"][k], rtol=0, atol=0)


@pytest.mark.slow  # ≈ 90 s on the shared 2 cores (two 2-process runs; measured 2026-12-01)
def test_local_executor_with_two_tasks_trains_like_two_torchrun_processes(tmp_path, monkeypatch):
    """``tasks_per_node=2`` on submitit's LocalExecutor: each task exports its torch.distributed environment
    (TorchDistributedEnvironment), the two join one gloo group, and the run ends with the weights of the same
    command launched as ``--devices 2`` (torchrun through lejepa_domains.train.launch)."""
    import json
    import subprocess
    import sys

    from lejepa_domains.train.slurm import submit_pretrain

    monkeypatch.setenv("LEJEPA_DOMAINS_DATA_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("GLOO_SOCKET_IFNAME", "lo")
    monkeypatch.setenv("OMP_NUM_THREADS", "1")  # the same threads in both launches: same float summation order
    recipe = shard_recipe(tmp_path / "shardtest.py", tar_dataset(tmp_path / "shards", n_train=32, per_shard=4,
                                                                 n_eval=8))
    job = submit_pretrain("executor=local,time=10,tasks_per_node=2", str(recipe),
                          {"device": "cpu", "epochs": 2, "stream": True, "out": str(tmp_path / "run")})
    assert job.results() == [str(tmp_path / "run")] * 2  # both tasks ran pretrain in the fixed run folder
    del job
    config = json.loads((tmp_path / "run" / "config.json").read_text())
    assert config["world_size"] == 2
    script = Path(sys.executable).parent / "lejepa-domains"
    p = subprocess.run([str(script), "pretrain", str(recipe), "--devices", "2", "--device", "cpu", "--stream",
                        "--epochs", "2", "--out", str(tmp_path / "ref")], capture_output=True, text=True,
                       env={**os.environ, "NO_ALBUMENTATIONS_UPDATE": "1", "HF_HUB_OFFLINE": "1"}, timeout=300)
    assert p.returncode == 0, p.stderr[-3000:]
    a = torch.load(tmp_path / "run" / "checkpoint.pt", weights_only=False)
    b = torch.load(tmp_path / "ref" / "checkpoint.pt", weights_only=False)
    assert a["step"] == b["step"] == 2 * config["steps_per_epoch"] and config["steps_per_epoch"] == 2
    for k in b["model"]:
        torch.testing.assert_close(a["model"][k], b["model"][k], rtol=0, atol=0)
