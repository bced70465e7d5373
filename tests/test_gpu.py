"""GPU pinning (duopath.devices) with fake device counts: no GPU is needed, the locks are real.

The multi-process tests start real Python processes, because the point of the file lock is
that *separate jobs* (what ``snakemake --cores all --resources gpu=4`` starts) end up on
separate GPUs, and that a job that dies frees its GPU.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from duopath import devices

CHILD = """
import sys
from pathlib import Path
from duopath.devices import pick_device
dev = pick_device(sys.argv[1], device_count=int(sys.argv[2]), lock_dir=Path(sys.argv[3]),
                  environ={k: v for k, v in (a.split("=", 1) for a in sys.argv[4:])})
print(dev, flush=True)
sys.stdin.readline()   # hold the claim until the parent says so
"""


@pytest.fixture(autouse=True)
def _no_claim_left() -> Iterator[None]:
    devices.release_process_claim()
    yield
    devices.release_process_claim()


def _job(lock_dir: Path, count: int, *env: str, requested: str = "cuda") -> subprocess.Popen:
    """A stand-in for one embedding job: claims a device, prints it, holds it until stdin closes."""
    return subprocess.Popen([sys.executable, "-c", CHILD, requested, str(count), str(lock_dir), *env],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)


def _device(proc: subprocess.Popen) -> str:
    line = proc.stdout.readline().strip()
    assert line, "child printed no device"
    return line


def _finish(*procs: subprocess.Popen) -> None:
    for p in procs:
        if p.poll() is None:
            p.stdin.close()
        p.wait(timeout=30)


def test_cpu_and_explicit_devices_are_taken_as_given(tmp_path: Path) -> None:
    assert devices.pick_device("cpu", device_count=4, environ={}, lock_dir=tmp_path) == "cpu"
    assert devices.pick_device("cuda:2", device_count=4, environ={}, lock_dir=tmp_path) == "cuda:2"
    assert not any(tmp_path.rglob("*.lock")), "an explicit device must not claim anything"
    with pytest.raises(devices.GpuError, match="only 2 CUDA device"):
        devices.pick_device("cuda:3", device_count=2, environ={}, lock_dir=tmp_path)
    for bad in ("gpu", "cuda:x", "cpu:1", "auto:0"):
        with pytest.raises(devices.GpuError, match="use auto, cpu, cuda or cuda:N"):
            devices.pick_device(bad, device_count=1, environ={}, lock_dir=tmp_path)


def test_no_visible_gpu(tmp_path: Path) -> None:
    assert devices.pick_device("auto", device_count=0, environ={}, lock_dir=tmp_path) == "cpu"
    with pytest.raises(devices.GpuError, match="no CUDA device is visible"):
        devices.pick_device("cuda", device_count=0, environ={"CUDA_VISIBLE_DEVICES": ""}, lock_dir=tmp_path)


def test_slurm_binding_is_respected_without_locks(tmp_path: Path) -> None:
    """A SLURM job with --gpus=1 sees one device (its own, renumbered): use it, claim nothing."""
    env = {"SLURM_JOB_ID": "42", "CUDA_VISIBLE_DEVICES": "3"}
    assert devices.pick_device("cuda", device_count=1, environ=env, lock_dir=tmp_path) == "cuda:0"
    assert devices.pick_device("auto", device_count=1, environ=env, lock_dir=tmp_path) == "cuda:0"
    assert not any(tmp_path.rglob("*.lock"))


def test_claims_are_exclusive_then_shared(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    tokens = ["0", "1", "2", "3"]
    claims = [devices.claim_gpu(tokens, tmp_path) for _ in range(4)]
    try:
        assert [c.index for c in claims] == [0, 1, 2, 3]
        assert not any(c.shared for c in claims)
        extra = devices.claim_gpu(tokens, tmp_path, wait_s=0)
        assert extra.shared and extra.fd is None and 0 <= extra.index < 4
        assert "all 4 visible GPUs are claimed" in caplog.text
        claims[2].release()  # a job ends: its GPU is the one the next job gets
        again = devices.claim_gpu(tokens, tmp_path)
        assert (again.index, again.shared) == (2, False)
        again.release()
    finally:
        for c in claims:
            c.release()


def test_waits_for_a_gpu_to_free_up(tmp_path: Path) -> None:
    tokens = ["0", "1"]
    held = [devices.claim_gpu(tokens, tmp_path) for _ in tokens]
    timer = threading.Timer(1.0, held[1].release)
    timer.start()
    try:
        t0 = time.monotonic()
        claim = devices.claim_gpu(tokens, tmp_path, wait_s=20)
        assert (claim.index, claim.shared) == (1, False)
        assert 0.8 < time.monotonic() - t0 < 15
        claim.release()
    finally:
        timer.join()
        for c in held:
            c.release()


def test_four_jobs_get_four_gpus_and_a_killed_job_frees_its_gpu(tmp_path: Path) -> None:
    """What `snakemake --cores all --resources gpu=4` does on a 4-GPU machine, with processes."""
    jobs = []
    try:
        for _ in range(4):
            jobs.append(_job(tmp_path, 4))
        got = [_device(p) for p in jobs]
        assert sorted(got) == ["cuda:0", "cuda:1", "cuda:2", "cuda:3"], got
        victim = got.index("cuda:1")
        jobs[victim].send_signal(signal.SIGKILL)  # a crashed job: the kernel drops its lock
        jobs[victim].wait(timeout=30)
        late = _job(tmp_path, 4)
        jobs.append(late)
        assert _device(late) == "cuda:1"
    finally:
        _finish(*jobs)


def test_lock_names_follow_cuda_visible_devices(tmp_path: Path) -> None:
    """Jobs restricted to GPUs 2 and 5 lock gpu-2 / gpu-5 and index them as cuda:0 / cuda:1."""
    env = "CUDA_VISIBLE_DEVICES=2,5"
    a, b = _job(tmp_path, 2, env), _job(tmp_path, 2, env)
    try:
        assert sorted([_device(a), _device(b)]) == ["cuda:0", "cuda:1"]
        names = sorted(p.name for p in (tmp_path / "node").glob("*.lock"))
        assert names == ["gpu-2.lock", "gpu-5.lock"]
    finally:
        _finish(a, b)


def test_slurm_allocation_with_several_gpus_is_scoped_by_job(tmp_path: Path) -> None:
    """Two SLURM jobs each see 'their' 0,1 (renumbered): claims must not collide across jobs."""
    a = _job(tmp_path, 2, "SLURM_JOB_ID=7", "CUDA_VISIBLE_DEVICES=0,1")
    b = _job(tmp_path, 2, "SLURM_JOB_ID=8", "CUDA_VISIBLE_DEVICES=0,1")
    try:
        assert _device(a) == "cuda:0" and _device(b) == "cuda:0"
        assert {p.parent.name for p in tmp_path.rglob("*.lock")} == {"slurm-7", "slurm-8"}
    finally:
        _finish(a, b)


def test_claim_is_reused_within_a_process(tmp_path: Path) -> None:
    first = devices.pick_device("cuda", device_count=3, environ={}, lock_dir=tmp_path)
    assert devices.pick_device("auto", device_count=3, environ={}, lock_dir=tmp_path) == first
    assert len(list(tmp_path.rglob("*.lock"))) == 1


def test_lock_dir_from_environment(tmp_path: Path) -> None:
    assert devices.default_lock_dir({devices.LOCK_DIR_ENV: str(tmp_path)}) == tmp_path
    assert devices.default_lock_dir({}).name == f"duopath-gpu-locks-{os.getuid()}"


RESOLVE_CHILD = """
import sys
from pathlib import Path
import torch
torch.cuda.set_device = lambda device: None   # no GPU here: the claim is what is tested
from duopath.devices import resolve_device
dev = resolve_device(sys.argv[1], device_count=int(sys.argv[2]), lock_dir=Path(sys.argv[3]), environ={})
print(dev, flush=True)
sys.stdin.readline()
"""


def test_two_concurrent_auto_jobs_resolve_to_different_gpus(tmp_path: Path) -> None:
    """``resolve_device("auto")`` -- what embed, train, heatmaps and predict all call -- claims a
    free GPU, so two concurrent jobs on a two-GPU machine never share ``cuda:0``."""
    procs = [subprocess.Popen([sys.executable, "-c", RESOLVE_CHILD, "auto", "2", str(tmp_path)],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True) for _ in range(2)]
    try:
        assert sorted(_device(p) for p in procs) == ["cuda:0", "cuda:1"]
    finally:
        _finish(*procs)


def test_auto_without_gpu_is_cpu(tmp_path: Path) -> None:
    assert str(devices.resolve_device("auto", device_count=0, environ={}, lock_dir=tmp_path)) == "cpu"


def test_every_job_kind_uses_the_one_policy() -> None:
    """Training, embedding, heatmaps and predict resolve devices through duopath.devices only:
    no module defines a device policy of its own."""
    import ast

    from duopath.encoding import extract
    from duopath.training import run

    assert extract.resolve_device is devices.resolve_device
    assert run.resolve_device is devices.resolve_device
    src = Path(devices.__file__).parent
    own = [str(f.relative_to(src)) for f in src.rglob("*.py") if f.name != "devices.py"
           and any(isinstance(n, ast.FunctionDef) and n.name in ("resolve_device", "pick_device")
                   for n in ast.walk(ast.parse(f.read_text())))]
    assert own == [], f"device policies outside duopath.devices: {own}"
    for mod in ("duopath.cli.report", "duopath.cli.inference"):  # heatmaps, predict (train: run.py)
        text = Path(__import__(mod, fromlist=["_"]).__file__).read_text()
        assert "resolve_device(" in text, f"{mod} does not resolve its device through duopath.devices"


def test_gpu_resource_follows_the_setting(tmp_path: Path) -> None:
    assert devices.gpu_resource("cpu") == 0
    assert devices.gpu_resource("cuda") == 1 and devices.gpu_resource("cuda:1") == 1
    assert devices.gpu_resource("auto", {"CUDA_VISIBLE_DEVICES": ""}) == 0
    with pytest.raises(devices.GpuError):
        devices.gpu_resource("gpu")


def test_visible_gpu_count_respects_cuda_visible_devices() -> None:
    assert devices.visible_gpu_count({"CUDA_VISIBLE_DEVICES": ""}) == 0
    assert devices.visible_gpu_count({"CUDA_VISIBLE_DEVICES": "0,1"}) <= 2
