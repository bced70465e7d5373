"""The WSI half of the DAG through a real one-node SLURM cluster, via ``profiles/slurm``.

Why a real cluster and not a mocked ``sbatch``: what breaks in practice is the interplay of the
executor plugin, the SLURM daemons and the profile (status queries that hang without
accounting, GPU flags that the nested ``srun`` refuses, jobs that never leave the queue). Only
submitting real jobs shows it. The test:

1. installs Debian's ``slurm-wlm`` + ``munge`` when missing (skips, with the reason, when it
   cannot: not root, no apt-get, install failed, a SLURM it did not write is already here);
2. writes a one-node ``slurm.conf`` for this host (``slurmd -C``) with ``MinJobAge=600`` and
   no accounting, plus one fake GPU (a GRES without a device file) so that GPU requests can be
   scheduled; starts munged, slurmctld and slurmd and waits for the node to be idle;
3. runs segment -> tile -> embed -> wsi_summary for two copies of the CMU slide through
   ``--profile profiles/slurm`` and the same DAG locally, and compares the outputs;
4. checks the jobs really went through SLURM (job ids in Snakemake's log and in
   ``.snakemake/slurm_logs``, COMPLETED in ``squeue --states=all`` with the rule in the job
   comment, the rule's memory and time limit in ``scontrol show job``; the local rule did not);
5. re-embeds one slide as a GPU job (``gpu=1``) and checks SLURM allocated the GPU;
6. stops every daemon it started by PID and removes the config it wrote, also on failure.

Every subprocess has a timeout; a cluster that does not come up is a skip only when the cause
is the machine (packages, permissions), and a failure otherwise. The profile's own logic
(accounting detection, partitions from the environment) is also tested without a cluster, with
a fake ``scontrol`` (fast tests at the end).
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import re
import shutil
import signal
import socket
import stat
import subprocess
import sys
import time
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import zarr

log = logging.getLogger(__name__)

REPO = Path(__file__).resolve().parents[1]
SNAKEFILE = REPO / "workflow" / "Snakefile"
PROFILE = REPO / "profiles" / "slurm"
VENV_BIN = REPO / ".venv" / "bin"
CMU = REPO / "src" / "duopath" / "data" / "slides" / "CMU-1-Small-Region.svs"

SLURM_CONF = Path("/etc/slurm/slurm.conf")
GRES_CONF = Path("/etc/slurm/gres.conf")
MARKER = "# written by duopath tests/test_slurm.py; removed when the test ends"
STATE = Path("/var/tmp/duopath-slurm-test")
LOCK = Path("/var/tmp/duopath-slurm-test.lock")
PACKAGES = ("slurm-wlm", "munge")
BINARIES = ("slurmctld", "slurmd", "munged", "sbatch", "squeue", "scontrol", "sinfo", "scancel")
RUN_TIMEOUT_S = 480
SLIDES = ("s1", "s2")


def _sh(cmd: list[str], timeout: float, *, check: bool = True, env: dict | None = None,
        cwd: Path | None = None) -> subprocess.CompletedProcess:
    """Run a command with a timeout; raise with its output when ``check`` and it fails."""
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env, cwd=cwd)
    if check and proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} exited {proc.returncode}:\n{proc.stdout}\n{proc.stderr}")
    return proc


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _read_pid(path: Path) -> int | None:
    try:
        return int(path.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None


def _stop_pid(pid: int, name: str, timeout: float = 20) -> None:
    """SIGTERM one daemon we started, SIGKILL it if it does not exit in ``timeout`` s."""
    if not _alive(pid):
        return
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not _alive(pid):
            return
        time.sleep(0.2)
    log.warning("%s (pid %d) ignored SIGTERM for %.0f s; sending SIGKILL", name, pid, timeout)
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)


def _port_in_use(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.settimeout(1)
        return s.connect_ex(("127.0.0.1", port)) == 0


def _ensure_packages() -> None:
    """Install slurm-wlm + munge with apt when missing; ``pytest.skip`` when that is impossible."""
    if all(shutil.which(b) or Path("/usr/sbin", b).exists() for b in BINARIES):
        return
    if os.geteuid() != 0:
        pytest.skip("SLURM is not installed and installing it (apt-get) needs root")
    if shutil.which("apt-get") is None:
        pytest.skip("SLURM is not installed and this machine has no apt-get to install it")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    try:
        _sh(["apt-get", "update", "-qq"], timeout=240, env=env)
        _sh(["apt-get", "install", "-y", "-qq", *PACKAGES], timeout=480, env=env)
    except (RuntimeError, subprocess.TimeoutExpired) as err:
        pytest.skip(f"could not install {' '.join(PACKAGES)} with apt-get: {str(err)[-800:]}")
    missing = [b for b in BINARIES if not (shutil.which(b) or Path("/usr/sbin", b).exists())]
    if missing:
        pytest.skip(f"apt-get installed {PACKAGES} but these are still missing: {missing}")


def _sbin(name: str) -> str:
    return shutil.which(name) or str(Path("/usr/sbin", name))


@dataclass
class Cluster:
    """A one-node SLURM cluster started by this test; ``stop`` undoes everything it did."""

    node: str
    partition: str = "debug"
    started: dict[str, int] = field(default_factory=dict)  # daemon name -> pid
    wrote: list[Path] = field(default_factory=list)

    def env(self) -> dict[str, str]:
        """Environment for the SLURM clients and for Snakemake (``duopath`` on PATH first)."""
        env = {k: v for k, v in os.environ.items() if k != "SLURM_CONF"}  # our /etc/slurm one
        return {**env, "PATH": f"{VENV_BIN}:{os.environ.get('PATH', '')}",
                "DUOPATH_SLURM_PARTITION": self.partition}

    def stop(self) -> None:
        with contextlib.suppress(Exception):
            if shutil.which("scancel") and "slurmctld" in self.started:
                _sh(["scancel", "--user", "root"], timeout=20, check=False)
        for name in ("slurmd", "slurmctld", "munged"):
            pid = self.started.pop(name, None)
            if pid is not None:
                _stop_pid(pid, name)
        for path in self.wrote:
            with contextlib.suppress(FileNotFoundError):
                if path.read_text().startswith(MARKER):
                    path.unlink()
        self.wrote.clear()


def _stop_leftovers() -> None:
    """Stop daemons a previous, killed run of this test left behind.

    Only PIDs from this test's own state folder: slurmctld/slurmd write their pid files there
    (our slurm.conf says so) and munged's is recorded there when this test starts it.
    """
    for name, pid_file in (("slurmd", "slurmd.pid"), ("slurmctld", "slurmctld.pid"),
                           ("munged", "munged.started")):
        pid = _read_pid(STATE / pid_file)
        if pid is None or not _alive(pid):
            continue
        with contextlib.suppress(OSError):
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace")
            if name in cmdline:
                log.warning("stopping %s (pid %d) left by an earlier run of this test", name, pid)
                _stop_pid(pid, name)


def _start_daemon(cmd: list[str], log_name: str) -> None:
    """Start a self-daemonising program; its std streams go to a file, so nothing can block."""
    with (STATE / log_name).open("ab") as out:
        proc = subprocess.run(cmd, stdin=subprocess.DEVNULL, stdout=out, stderr=out, timeout=30)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} exited {proc.returncode}: "
                           f"{(STATE / log_name).read_text()[-2000:]}")


def _start_munge(cluster: Cluster) -> None:
    """Use a working munged if there is one; otherwise start one (and stop it at the end)."""
    def works() -> bool:
        try:
            enc = subprocess.run(["munge", "-n"], capture_output=True, timeout=10)
            if enc.returncode != 0:
                return False
            dec = subprocess.run(["unmunge"], input=enc.stdout, capture_output=True, timeout=10)
            return dec.returncode == 0
        except (OSError, subprocess.TimeoutExpired):
            return False

    if works():
        return
    for d in ("/run/munge", "/var/log/munge", "/var/lib/munge"):
        Path(d).mkdir(parents=True, exist_ok=True)
        shutil.chown(d, "munge", "munge")
    if not Path("/etc/munge/munge.key").exists():
        _sh(["mungekey", "--create"], timeout=30)
        shutil.chown("/etc/munge/munge.key", "munge", "munge")
    _start_daemon(["runuser", "-u", "munge", "--", _sbin("munged")], "munged.start.log")
    deadline = time.monotonic() + 20
    while not works():
        if time.monotonic() > deadline:
            raise RuntimeError("munged started but `munge -n | unmunge` does not succeed")
        time.sleep(0.3)
    pid = _read_pid(Path("/run/munge/munged.pid"))
    if pid is not None:
        cluster.started["munged"] = pid
        (STATE / "munged.started").write_text(f"{pid}\n")


def _slurm_conf(node_line: str, node: str) -> str:
    """One node, one partition, no accounting, one fake GPU; MinJobAge keeps jobs in squeue."""
    return "\n".join([
        MARKER,
        "ClusterName=duopathtest",
        f"SlurmctldHost={node}",
        "SlurmUser=root",
        "AuthType=auth/munge",
        f"StateSaveLocation={STATE}/ctld",
        f"SlurmdSpoolDir={STATE}/d",
        f"SlurmctldPidFile={STATE}/slurmctld.pid",
        f"SlurmdPidFile={STATE}/slurmd.pid",
        f"SlurmctldLogFile={STATE}/slurmctld.log",
        f"SlurmdLogFile={STATE}/slurmd.log",
        "ProctrackType=proctrack/linuxproc",
        "TaskPlugin=task/none",
        "JobAcctGatherType=jobacct_gather/none",
        "SchedulerType=sched/backfill",
        "SelectType=select/cons_tres",
        "SelectTypeParameters=CR_Core_Memory",
        "ReturnToService=2",
        "MpiDefault=none",
        "MinJobAge=600",
        "GresTypes=gpu",
        f"{node_line} Gres=gpu:1 State=UNKNOWN",
        "PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP",
        "",
    ])


def _node_line() -> tuple[str, str]:
    """``NodeName=... CPUs=... RealMemory=...`` from ``slurmd -C``, memory lowered by 10 %."""
    out = _sh([_sbin("slurmd"), "-C"], timeout=30).stdout
    line = next((ln for ln in out.splitlines() if ln.startswith("NodeName=")), None)
    if line is None:
        raise RuntimeError(f"`slurmd -C` printed no NodeName line:\n{out}")
    fields = dict(tok.split("=", 1) for tok in line.split() if "=" in tok)
    node = fields["NodeName"]
    mem = int(int(fields.get("RealMemory", "4000")) * 0.9)
    keep = ["CPUs", "Boards", "SocketsPerBoard", "CoresPerSocket", "ThreadsPerCore"]
    parts = [f"NodeName={node}"] + [f"{k}={fields[k]}" for k in keep if k in fields]
    return node, " ".join([*parts, f"RealMemory={mem}"])


def _wait_idle(cluster: Cluster, timeout: float = 90) -> None:
    deadline = time.monotonic() + timeout
    state = ""
    while time.monotonic() < deadline:
        proc = _sh(["sinfo", "-h", "-N", "-o", "%T"], timeout=15, check=False)
        state = proc.stdout.strip()
        if state == "idle":
            return
        if state.startswith(("down", "drain")):
            _sh(["scontrol", "update", f"nodename={cluster.node}", "state=resume"], timeout=15,
                check=False)
        time.sleep(1)
    logs = "".join((STATE / f).read_text()[-2000:] for f in ("slurmctld.log", "slurmd.log")
                   if (STATE / f).exists())
    raise RuntimeError(f"node {cluster.node} not idle after {timeout:.0f} s (state {state!r})\n{logs}")


@contextlib.contextmanager
def _cluster_lock() -> Iterator[None]:
    """Serialise concurrent runs of this test on one machine (they share /etc/slurm and ports)."""
    LOCK.parent.mkdir(parents=True, exist_ok=True)
    with LOCK.open("w") as fh:
        deadline = time.monotonic() + 900
        while True:
            try:
                fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    pytest.skip(f"another run of this SLURM test holds {LOCK} for over 15 minutes")
                time.sleep(2)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


@pytest.fixture(scope="module")
def cluster() -> Iterator[Cluster]:
    """A running one-node cluster (or a skip that says why there cannot be one)."""
    if os.geteuid() != 0:
        pytest.skip("a local SLURM cluster needs root (daemons, /etc/slurm)")
    _ensure_packages()
    with _cluster_lock():
        _stop_leftovers()
        for path in (SLURM_CONF, GRES_CONF):
            if path.exists() and not path.read_text().startswith(MARKER):
                pytest.skip(f"{path} exists and was not written by this test: not touching a real "
                            "SLURM installation")
        for port, who in ((6817, "slurmctld"), (6818, "slurmd")):
            if _port_in_use(port):
                pytest.skip(f"port {port} ({who}) is in use: another SLURM is running here")
        node, node_line = _node_line()
        c = Cluster(node=node)
        try:
            shutil.rmtree(STATE, ignore_errors=True)
            for d in ("ctld", "d"):
                (STATE / d).mkdir(parents=True, exist_ok=True)
            _start_munge(c)
            SLURM_CONF.parent.mkdir(parents=True, exist_ok=True)
            SLURM_CONF.write_text(_slurm_conf(node_line, node))
            c.wrote.append(SLURM_CONF)
            # One fake GPU: a character device with /dev/null's numbers, named like a GPU so that
            # slurmd counts it and sets CUDA_VISIBLE_DEVICES=0 for a job it is given to.
            fake_gpu = STATE / "nvidia0"
            os.mknod(fake_gpu, stat.S_IFCHR | 0o666, os.makedev(1, 3))
            GRES_CONF.write_text(f"{MARKER}\nNodeName={node} Name=gpu File={fake_gpu}\n")
            c.wrote.append(GRES_CONF)
            for name in ("slurmctld", "slurmd"):
                _start_daemon([_sbin(name)], f"{name}.start.log")
                deadline = time.monotonic() + 20
                while (pid := _read_pid(STATE / f"{name}.pid")) is None or not _alive(pid):
                    if time.monotonic() > deadline:
                        log_text = (STATE / f"{name}.log").read_text()[-3000:] if (
                            STATE / f"{name}.log").exists() else "(no log)"
                        raise RuntimeError(f"{name} did not start:\n{log_text}")
                    time.sleep(0.2)
                c.started[name] = pid
            _wait_idle(c)
            yield c
        finally:
            c.stop()


def _write_cohort(root: Path, config_extra: str = "") -> None:
    """Two copies of the CMU slide as a user cohort, CPU encoder, in working directory ``root``."""
    (root / "slides").mkdir(parents=True)
    for s in SLIDES:
        shutil.copy(CMU, root / "slides" / f"{s}.svs")
    rows = [f"P{i},{s},{s}.svs,{10 * (i + 1)},{i % 2},site{i}" for i, s in enumerate(SLIDES)]
    (root / "samples.csv").write_text("patient_id,slide_id,slide_path,time,event,site\n"
                                      + "\n".join(rows) + "\n")
    (root / "config.yaml").write_text(
        "output_dir: out\n"
        "cohorts:\n  tiny:\n    sample_sheet: samples.csv\n    slide_dir: slides\n"
        "encoder:\n  device: cpu\n  num_workers: 1\n  batch_size: 32\n" + config_extra
    )


def _snakemake(root: Path, args: list[str], env: dict, timeout: float) -> subprocess.CompletedProcess:
    """Run Snakemake in its own process group; on timeout kill the group and fail with the log."""
    cmd = [str(VENV_BIN / "snakemake"), "-s", str(SNAKEFILE), "--directory", str(root), *args]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            env=env, cwd=root, start_new_session=True)
    try:
        out, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, _ = proc.communicate(timeout=30)
        pytest.fail(f"snakemake {' '.join(args)} did not finish in {timeout:.0f} s "
                    f"(a status query that never sees the jobs end?):\n{out[-6000:]}")
    return subprocess.CompletedProcess(cmd, proc.returncode, out, "")


def _slurm_jobs() -> dict[str, dict[str, str]]:
    """Every job slurmctld still remembers (MinJobAge): id -> state, name, comment."""
    out = _sh(["squeue", "--states=all", "-h", "-o", "%i|%T|%j|%k"], timeout=30).stdout
    jobs = {}
    for line in out.splitlines():
        job_id, state, name, comment = line.split("|", 3)
        jobs[job_id.strip()] = {"state": state.strip(), "name": name.strip(), "comment": comment.strip()}
    return jobs


def _scontrol(job_id: str) -> dict[str, str]:
    out = _sh(["scontrol", "show", "job", job_id], timeout=30).stdout
    return dict(tok.split("=", 1) for tok in out.split() if "=" in tok)


def _features(store: Path) -> dict[str, np.ndarray]:
    with warnings.catch_warnings():  # Snakemake's .snakemake_timestamp inside a directory() output
        warnings.filterwarnings("ignore", message=".*snakemake_timestamp.*")
        root = zarr.open_group(str(store), mode="r")
        groups = sorted(g for g, _ in root.groups())
    return {f"{mag}/{name}": np.asarray(root[mag][name][...])
            for mag in groups
            for name in ("features", "coords", "parent")}


def _assert_same_outputs(local: Path, remote: Path) -> None:
    """Tile tables equal, masks equal, features equal within float16 rounding."""
    for s in SLIDES:
        a = pd.read_parquet(local / f"out/tiles/tiny/{s}.parquet")
        b = pd.read_parquet(remote / f"out/tiles/tiny/{s}.parquet")
        assert len(a) > 0, f"slide {s}: no tiles in the local run"
        pd.testing.assert_frame_equal(a, b)
        assert (local / f"out/masks/tiny/{s}.png").read_bytes() == (
            remote / f"out/masks/tiny/{s}.png").read_bytes()
        fa = _features(local / f"out/features/tiny/efficientnet_lite0/{s}.zarr")
        fb = _features(remote / f"out/features/tiny/efficientnet_lite0/{s}.zarr")
        assert fa.keys() == fb.keys() and len(fa) >= 3
        for key in fa:
            if key.endswith("features"):
                assert fa[key].dtype == np.float16 and fa[key].shape == fb[key].shape
                np.testing.assert_allclose(fa[key].astype(np.float32), fb[key].astype(np.float32),
                                           rtol=1e-2, atol=1e-2, err_msg=f"{s} {key}")
            else:
                np.testing.assert_array_equal(fa[key], fb[key], err_msg=f"{s} {key}")
    sa = pd.read_csv(local / "out/qc/tiny/wsi_summary.csv")
    sb = pd.read_csv(remote / "out/qc/tiny/wsi_summary.csv")
    pd.testing.assert_frame_equal(sa, sb)


SLURM_ARGS = [
    "--profile", str(PROFILE),
    # Test speed only: poll SLURM 5 s after submitting (the profile's 20 s suits real clusters).
    "--slurm-init-seconds-before-status-checks", "5",
]
TARGET = "out/qc/tiny/wsi_summary.csv"  # the WSI half; later stages need more than 2 patients


@dataclass
class Runs:
    """The tiny cohort run once through SLURM and once locally."""

    cluster: Cluster
    local: Path
    remote: Path
    slurm_log: str
    slurm_s: float


@pytest.fixture(scope="module")
def runs(cluster: Cluster, tmp_path_factory: pytest.TempPathFactory) -> Runs:
    root = tmp_path_factory.mktemp("slurm_dag")
    local, remote = root / "local", root / "slurm"
    _write_cohort(local)
    _write_cohort(remote)
    env = cluster.env()
    t0 = time.monotonic()
    res = _snakemake(remote, [*SLURM_ARGS, TARGET], env, timeout=RUN_TIMEOUT_S)
    slurm_s = time.monotonic() - t0
    (root / "slurm_run.log").write_text(res.stdout)
    assert res.returncode == 0, f"SLURM run failed (log {root / 'slurm_run.log'}):\n{res.stdout[-8000:]}"
    log.info("tiny WSI DAG through SLURM: %.1f s", slurm_s)
    res_local = _snakemake(local, ["--cores", "2", TARGET], env, timeout=RUN_TIMEOUT_S)
    assert res_local.returncode == 0, f"local run failed:\n{res_local.stdout[-8000:]}"
    return Runs(cluster, local, remote, res.stdout, slurm_s)


def _slurm_logs(workdir: Path) -> dict[str, Path]:
    """The plugin's per-job logs: SLURM job id -> log path (kept by the profile)."""
    return {p.stem: p for p in (workdir / ".snakemake/slurm_logs").rglob("*.log")}


@pytest.mark.slow
def test_jobs_ran_as_slurm_jobs(runs: Runs) -> None:
    """Segment+tile as one grouped job, embed one job per slide, wsi_summary local."""
    submitted = set(re.findall(r"has been submitted with SLURM jobid (\d+)", runs.slurm_log))
    assert len(submitted) == 1 + len(SLIDES), (
        f"expected 1 wsi_prep group job + {len(SLIDES)} embed jobs, got {sorted(submitted)}:\n"
        f"{runs.slurm_log[-4000:]}")

    # The plugin kept one log per job, named by its SLURM job id, under the rule or group.
    logs = _slurm_logs(runs.remote)
    assert submitted <= logs.keys(), f"no SLURM log for {submitted - logs.keys()}"
    kinds = sorted(str(logs[j].relative_to(runs.remote / ".snakemake/slurm_logs")).split("/")[0]
                   for j in submitted)
    assert kinds == ["group_wsi_prep_segment_tile"] + ["rule_embed"] * len(SLIDES), kinds
    group_id = next(j for j in submitted if "group_wsi_prep" in str(logs[j]))
    group_log = logs[group_id].read_text()
    for s in SLIDES:  # inside the group job, Snakemake ran segment and tile of every slide
        for rule in ("segment", "tile"):
            assert re.search(rf"rule {rule}:\n(?:.*\n){{0,8}}?\s+wildcards: cohort=tiny, slide={s}\n",
                             group_log), f"{rule} {s} not in the group job's log"

    # slurmctld knows them (MinJobAge): COMPLETED, one run name, rule + wildcards as comment.
    jobs = _slurm_jobs()
    ours = {j: jobs[j] for j in submitted if j in jobs}
    assert ours.keys() == submitted, f"squeue does not know {submitted - ours.keys()}: {jobs}"
    assert {j["state"] for j in ours.values()} == {"COMPLETED"}, ours
    assert len({j["name"] for j in ours.values()}) == 1, "one workflow run, one SLURM job name"
    comments = sorted(j["comment"] for j in ours.values())
    assert comments[-1] == "rule_wsi_prep_segment_tile", comments
    for s in SLIDES:
        assert f"rule_embed_wildcards_tiny_efficientnet_lite0_{s}" in comments, comments
    assert "localrule wsi_summary:" in runs.slurm_log, "wsi_summary must run on the submit host"
    assert not any("wsi_summary" in c for c in comments)

    # The rules' resources reached sbatch; the group adds up its two layers' runtimes.
    info = {j: _scontrol(j) for j in submitted}
    embed = next(v for j, v in info.items() if j != group_id)
    assert embed["MinMemoryNode"] == "6000M" and embed["TimeLimit"] == "01:00:00", embed
    assert embed["Partition"] == runs.cluster.partition, "DUOPATH_SLURM_PARTITION was not used"
    assert embed["ExitCode"] == "0:0"
    assert embed.get("TresPerJob", "(null)") == "(null)", "a CPU encoder must not ask for a GPU"
    group = info[group_id]
    assert group["TimeLimit"] == "00:15:00", group  # segment 10 min + tile 5 min
    assert int(group["MinMemoryNode"].rstrip("M")) >= 2000, group


@pytest.mark.slow
def test_slurm_outputs_match_local_run(runs: Runs) -> None:
    _assert_same_outputs(runs.local, runs.remote)


@pytest.mark.slow
def test_second_slurm_run_has_nothing_to_do(runs: Runs) -> None:
    res = _snakemake(runs.remote, [*SLURM_ARGS, "-n", TARGET], runs.cluster.env(), timeout=120)
    assert res.returncode == 0 and "Nothing to be done" in res.stdout, res.stdout[-3000:]


@pytest.mark.slow
def test_gpu_job_gets_a_gpu_from_slurm(runs: Runs) -> None:
    """Re-embed one slide as a GPU job: SLURM allocates the (fake) GPU and the job succeeds.

    ``gpu=1`` is what rules/embed.smk asks for when ``encoder.device`` is ``cuda``; here it is
    set on the command line because there is no CUDA behind the fake GRES (the encoder stays on
    CPU). A command-line ``--set-resources`` replaces the profile's whole list, so the profile's
    ``embed:tasks_per_gpu=0`` is repeated.
    """
    target = "out/features/tiny/efficientnet_lite0/s2.zarr"
    res = _snakemake(runs.remote, [*SLURM_ARGS, "--set-resources", "embed:gpu=1",
                                   "embed:tasks_per_gpu=0", "--forcerun", target, "--", target],
                     runs.cluster.env(), timeout=RUN_TIMEOUT_S)
    assert res.returncode == 0, f"GPU job failed:\n{res.stdout[-8000:]}"
    ids = set(re.findall(r"has been submitted with SLURM jobid (\d+)", res.stdout))
    assert len(ids) == 1, res.stdout[-3000:]
    info = _scontrol(ids.pop())
    assert info["JobState"] == "COMPLETED", info
    assert "gpu:1" in info.get("TresPerJob", ""), f"SLURM did not allocate a GPU: {info}"
    _assert_same_outputs(runs.local, runs.remote)


# --- the profile's logic, without a cluster (fast) --------------------------------------------


def _profile(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, scontrol: str | None,
             **env: str) -> dict:
    """The profile as Snakemake reads it (yte rendered, key=value lists), in a chosen environment.

    ``scontrol``: what a fake ``scontrol show config`` prints (None: no scontrol on PATH).
    """
    from snakemake.profiles import ProfileConfigFileParser

    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    if scontrol is not None:
        fake = bin_dir / "scontrol"
        lines = "".join(f"printf '%s\\n' '{line}'\n" for line in scontrol.splitlines())
        fake.write_text(f"#!/bin/sh\n{lines}")  # shell builtins only: PATH holds nothing else
        fake.chmod(0o755)
    monkeypatch.setenv("PATH", str(bin_dir))
    for key in ("DUOPATH_SLURM_PARTITION", "DUOPATH_SLURM_GPU_PARTITION", "DUOPATH_SLURM_ACCOUNT",
                "DUOPATH_SLURM_ACCOUNTING", "DUOPATH_SLURM_JOBS"):
        monkeypatch.delenv(key, raising=False)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    with (PROFILE / "config.yaml").open() as fh:
        return dict(ProfileConfigFileParser().parse(fh))


NO_ACCOUNTING = "AccountingStorageType   = (null)\nMinJobAge               = 600 sec"
SLURMDBD = "AccountingStorageType   = accounting_storage/slurmdbd\nMinJobAge = 300 sec"


def test_profile_without_accounting_polls_squeue(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    prof = _profile(monkeypatch, tmp_path, NO_ACCOUNTING)
    assert prof["executor"] == "slurm"
    assert prof["slurm-status-command"] == "squeue"
    assert prof["slurm-no-account"] == "True"
    none_plugin = _profile(monkeypatch, tmp_path, "AccountingStorageType = accounting_storage/none")
    assert none_plugin["slurm-status-command"] == "squeue"


def test_profile_with_accounting_keeps_sacct(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for scontrol in (SLURMDBD, None):  # slurmdbd, or cannot tell: the plugin's default (sacct)
        prof = _profile(monkeypatch, tmp_path, scontrol)
        assert "slurm-status-command" not in prof and "slurm-no-account" not in prof, prof


def test_profile_accounting_override(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    assert _profile(monkeypatch, tmp_path, SLURMDBD, DUOPATH_SLURM_ACCOUNTING="no")[
        "slurm-status-command"] == "squeue"
    assert "slurm-status-command" not in _profile(monkeypatch, tmp_path, NO_ACCOUNTING,
                                                  DUOPATH_SLURM_ACCOUNTING="yes")


def test_profile_resources_and_site_settings_from_environment(monkeypatch: pytest.MonkeyPatch,
                                                               tmp_path: Path) -> None:
    bare = _profile(monkeypatch, tmp_path, NO_ACCOUNTING)
    assert {"mem_mb=2000", "runtime=30", "cpus_per_task=threads"} <= set(bare["default-resources"])
    assert not any(r.startswith(("slurm_partition", "slurm_account")) for r in bare["default-resources"])
    assert bare["set-resources"] == ["embed:tasks_per_gpu=0"]
    assert bare["jobs"] == "100"
    assert {"rerun-incomplete", "keep-going", "printshellcmds", "latency-wait"} <= bare.keys()
    assert bare["groups"] == ["segment=wsi_prep", "tile=wsi_prep"]

    site = _profile(monkeypatch, tmp_path, NO_ACCOUNTING, DUOPATH_SLURM_PARTITION="cpu",
                    DUOPATH_SLURM_GPU_PARTITION="gpu", DUOPATH_SLURM_ACCOUNT="lab42",
                    DUOPATH_SLURM_JOBS="500")
    assert {"slurm_partition=cpu", "slurm_account=lab42"} <= set(site["default-resources"])
    assert set(site["set-resources"]) == {"embed:tasks_per_gpu=0", "embed:slurm_partition=gpu"}
    assert site["jobs"] == "500"


def test_rules_hold_no_site_settings() -> None:
    """Partition and account come from the profile or the environment, never from a rule."""
    for smk in (REPO / "rules").glob("*.smk"):
        text = smk.read_text()
        assert not re.search(r"slurm_(partition|account)\s*=", text), f"{smk.name} hard-codes SLURM settings"


def test_missing_slurm_without_root_or_apt_is_a_skip_with_reason(monkeypatch: pytest.MonkeyPatch) -> None:
    """The cluster test skips (never fails) when the machine cannot get SLURM, and says why."""
    monkeypatch.setattr(sys.modules[__name__], "BINARIES", ("duopath-no-such-daemon",))
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    with pytest.raises(pytest.skip.Exception, match="needs root"):
        _ensure_packages()
    monkeypatch.setattr(os, "geteuid", lambda: 0)
    monkeypatch.setattr(shutil, "which", lambda name: None)
    with pytest.raises(pytest.skip.Exception, match="no apt-get"):
        _ensure_packages()


def test_gpu_config_reaches_embed_resources(tmp_path: Path) -> None:
    """`encoder.device: cuda` -> embed asks gpu=1 (-> sbatch --gpus=1) in the GPU partition.

    A dry-run through the profile, no cluster needed; placeholder slides (nothing opens them).
    """
    (tmp_path / "slides").mkdir()
    for s in SLIDES:
        (tmp_path / "slides" / f"{s}.svs").touch()
    rows = [f"P{i},{s},{s}.svs,{10 * (i + 1)},{i % 2},site{i}" for i, s in enumerate(SLIDES)]
    (tmp_path / "samples.csv").write_text("patient_id,slide_id,slide_path,time,event,site\n"
                                          + "\n".join(rows) + "\n")
    (tmp_path / "config.yaml").write_text(
        "output_dir: out\ncohorts:\n  tiny:\n    sample_sheet: samples.csv\n    slide_dir: slides\n"
        "encoder:\n  device: cuda\n  num_workers: 3\n")
    env = {**os.environ, "PATH": f"{VENV_BIN}:{os.environ.get('PATH', '')}",
           "DUOPATH_SLURM_PARTITION": "cpu", "DUOPATH_SLURM_GPU_PARTITION": "gpu",
           "DUOPATH_SLURM_ACCOUNTING": "no"}
    res = _snakemake(tmp_path, ["--profile", str(PROFILE), "-n", "--cores", "8", TARGET], env,
                     timeout=120)
    assert res.returncode == 0, res.stdout[-4000:]
    # Jobs of a group (segment + tile: wsi_prep) are printed indented under "Group job".
    blocks = re.findall(r"^( *)rule (\w+):\n((?:\1    .*\n)+)", res.stdout, flags=re.M)
    resources = {}
    for _, rule, body in blocks:
        line = re.search(r"^ *resources: (.*)$", body, flags=re.M).group(1)
        resources.setdefault(rule, dict(kv.split("=", 1) for kv in line.split(", ")))
    embed, segment = resources["embed"], resources["segment"]
    assert (embed["gpu"], embed["tasks_per_gpu"], embed["slurm_partition"]) == ("1", "0", "gpu")
    assert embed["cpus_per_task"] == "3", "cpus_per_task must follow the rule's threads"
    assert segment["slurm_partition"] == "cpu" and "gpu" not in segment
