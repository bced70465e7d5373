"""Feature extraction at accelerator speed: duopath's segment → tile → embed path against the same
encoder's pure forward, a CLAM-style peer loop, and the fixed cost of an ``embed`` job.

For each encoder (random weights of a real shape, loaded through the registry's local-weights
path; shape sets cost), in one process and on one synthetic H&E slide (bench/synth.py):

- **pure**: the encoder's forward on random device tensors, batch ``--batch``, as duopath runs it
  (bf16 autocast + channels-last on CUDA; optionally ``torch.compile``), tiles/s;
- **duopath**: ``embed_slides`` over the slide's nested 10x + 20x tiles, store written, tiles/s,
  the ratio to pure, GPU utilisation (NVML), CPU cores used, and where time went
  (duopath.encoding.timing);
- **peer**: a CLAM-style loop (bench/peer.py: fp32, batch 256, one read_region per tile) over the
  same tiles, tiles/s, and how close its features are to duopath's (cosine);
- **fixed cost** of an embed job: N small slides as N ``duopath embed`` processes (one per slide,
  the per-slide Snakemake rule) versus one process for all N (the batched rule); interpreter
  start and imports timed alone, the weight load read from the job's log.

Usage (GPU, what bench/gpu_all.sh runs):
    python bench/embed.py --out bench/results/embed_gpu.json
CPU (small sizes; 2 cores shared): see bench/README.md for the exact command.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import re
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import torch
import zarr

sys.path.insert(0, str(Path(__file__).resolve().parent))
from peer import run_peer
from synth import make_slide, prepare_tiles, random_checkpoint

from duopath.config import EncoderConfig
from duopath.devices import resolve_device
from duopath.encoding.extract import Runner, SlideJob, embed_slides
from duopath.encoding.registry import load_encoder

log = logging.getLogger("bench")
CLI = "from duopath.cli import app; app()"  # the `duopath` command, whatever the CLI's layout


class GpuSampler:
    """Mean GPU utilisation (NVML, every 100 ms) while a block runs; None without NVML/CUDA."""

    def __init__(self, device: torch.device) -> None:
        self.handle, self.samples, self._stop = None, [], threading.Event()
        if device.type != "cuda":
            return
        try:
            import pynvml

            pynvml.nvmlInit()
            self.handle = pynvml.nvmlDeviceGetHandleByIndex(device.index or 0)
            self._nvml = pynvml
        except Exception as err:
            log.warning("no GPU utilisation (NVML: %s)", err)

    def _run(self) -> None:
        while not self._stop.wait(0.1):
            self.samples.append(self._nvml.nvmlDeviceGetUtilizationRates(self.handle).gpu)

    def __enter__(self) -> GpuSampler:
        if self.handle is not None:
            self._thread = threading.Thread(target=self._run, daemon=True)
            self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self.handle is not None:
            self._stop.set()
            self._thread.join()

    @property
    def mean(self) -> float | None:
        return round(float(np.mean(self.samples)), 1) if self.samples else None


def cpu_seconds() -> float:
    """User + system CPU seconds of this process and its finished children (loader workers)."""
    t = os.times()
    return t.user + t.system + t.children_user + t.children_system


def rate(n: float, seconds: float) -> float:
    """n / seconds to 4 significant digits (ratios are taken of these; 1-decimal rounding of a
    CPU's 0.14 tiles/s would distort them)."""
    return float(f"{n / seconds:.4g}")


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


@torch.inference_mode()
def pure_forward(run: Runner, batch: int, device: torch.device, seconds: float) -> dict:
    """Tiles/s of the encoder alone on one random preprocessed batch reused (no data path)."""
    px = run.encoder.spec.input_px
    tiles = torch.randint(0, 256, (batch, px, px, 3), dtype=torch.uint8, device=device)
    x = run.preprocess(tiles)
    for _ in range(3):
        run(x)
    sync(device)
    n, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds or n < 2:
        run(x)
        n += 1
        if device.type == "cuda" and n % 5:
            continue
        sync(device)
    sync(device)
    wall = time.perf_counter() - t0
    return {"tiles_per_s": rate(n * batch, wall), "batches": n, "batch": batch}


def duopath_run(enc, cfg: EncoderConfig, slide: Path, tiles: Path, out: Path,
                device: torch.device) -> dict:
    """embed_slides over one slide with an already-loaded encoder (weights load excluded)."""
    c0, t0 = cpu_seconds(), time.perf_counter()
    with GpuSampler(device) as gpu:
        attrs = embed_slides([SlideJob(slide, tiles, out, "big")], cfg, encoder=enc)[0]
    wall = time.perf_counter() - t0
    timing = attrs["timing"]
    return {"tiles_per_s": rate(attrs["n_tiles"], wall), "wall_s": round(wall, 2),
            "n_tiles": attrs["n_tiles"], "gpu_util_mean_pct": gpu.mean,
            "cpu_cores_used": round((cpu_seconds() - c0) / wall, 2), "stages": timing}


def peer_run(enc, slide: Path, tiles: Path, store: Path, device: torch.device, workers: int,
             batch: int) -> dict:
    import pandas as pd

    table = pd.read_parquet(tiles)
    module = enc.module.to(memory_format=torch.contiguous_format)
    c0 = cpu_seconds()
    with GpuSampler(device) as gpu:
        feats, wall = run_peer(module, slide, table, px=enc.spec.input_px, mean=enc.spec.mean,
                               std=enc.spec.std, device=device, workers=workers, batch_size=batch)
    root = zarr.open_group(str(store), mode="r")
    ours = np.concatenate([root[m]["features"][:].astype(np.float32)
                           for m in table["magnification"].unique()])
    cos = (ours * feats).sum(1) / (np.linalg.norm(ours, axis=1) * np.linalg.norm(feats, axis=1) + 1e-12)
    return {"tiles_per_s": rate(len(table), wall), "wall_s": round(wall, 2),
            "gpu_util_mean_pct": gpu.mean, "cpu_cores_used": round((cpu_seconds() - c0) / wall, 2),
            "feature_cosine_min": round(float(cos.min()), 4),
            "feature_cosine_mean": round(float(cos.mean()), 4)}


def _timed(cmd: list[str], env: dict) -> tuple[float, str]:
    t0 = time.perf_counter()
    res = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if res.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd[:4])}... failed:\n{res.stderr[-3000:]}")
    return time.perf_counter() - t0, res.stderr


def fixed_cost(cfg: EncoderConfig, small: list[tuple[Path, Path]], work: Path) -> dict:
    """N small slides: N single-slide `duopath embed` processes versus one process for all N."""
    env = dict(os.environ)
    settings = cfg.model_dump_json()

    def cmd(items: list[tuple[Path, Path]], tag: str) -> list[str]:
        args = [sys.executable, "-c", CLI, "embed", *[str(s) for s, _ in items]]
        for s, t in items:
            args += ["--tiles", str(t), "--slide-id", s.stem, "--out", str(work / tag / f"{s.stem}.zarr")]
        return [*args, "--settings", settings]

    sep, loads = [], []
    for item in small:
        wall, err = _timed(cmd([item], "sep"), env)
        sep.append(wall)
        loads += [float(x) for x in re.findall(r"ready on \S+ in ([\d.]+) s", err)]
    t_batch, err = _timed(cmd(small, "batch"), env)
    n, t_sep = len(small), float(np.sum(sep))
    per_job = (t_sep - t_batch) / (n - 1)  # one process's fixed cost (the N-1 saved)
    return {"slides": n, "tiles_per_slide": _n_tiles(small[0][1]),
            "separate_total_s": round(t_sep, 2), "batched_total_s": round(t_batch, 2),
            "wall_per_slide_before_s": round(t_sep / n, 3), "wall_per_slide_after_s": round(t_batch / n, 3),
            "fixed_cost_per_job_s": round(per_job, 3),
            "fixed_cost_per_slide_before_s": round(per_job, 3),
            "fixed_cost_per_slide_after_s": round(per_job / n, 3),
            "weight_load_and_setup_s": round(float(np.median(loads)), 3) if loads else None}


def _n_tiles(tiles: Path) -> int:
    import pandas as pd

    return len(pd.read_parquet(tiles))


def process_costs() -> dict:
    """Interpreter start and the imports an embed job pays before any work (median of 3)."""
    def med(code: str) -> float:
        return round(float(np.median([_timed([sys.executable, "-c", code], dict(os.environ))[0]
                                      for _ in range(3)])), 3)

    return {"python_start_s": med("pass"), "import_torch_s": med("import torch"),
            "import_embed_path_s": med("import duopath.cli, duopath.encoding.extract")}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--tiles-20x", type=int, default=10000, help="20x tiles of the big slide")
    ap.add_argument("--mpp", type=float, default=0.5, help="level-0 µm/px of the synthetic slides")
    ap.add_argument("--encoders", default="resnet50_trunc,uni")
    ap.add_argument("--cap", action="append", default=[],
                    help="NAME=K: embed only K coarse (10x) tiles of the big slide with NAME (CPU)")
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--workers", type=int, default=min(16, os.cpu_count() or 1))
    ap.add_argument("--device", default="auto")
    ap.add_argument("--pure-seconds", type=float, default=5.0)
    ap.add_argument("--small-slides", type=int, default=6, help="slides of the fixed-cost test")
    ap.add_argument("--small-tiles", type=int, default=80, help="20x tiles per small slide")
    ap.add_argument("--fixed-encoders", default="efficientnet_lite0,resnet50_trunc,uni")
    ap.add_argument("--no-peer", action="store_true")
    ap.add_argument("--compile", action="store_true", help="also time torch.compile'd pure forward")
    ap.add_argument("--compile-only", metavar="NAME",
                    help="only time NAME's torch.compile'd pure forward, added to --out's JSON")
    ap.add_argument("--work", type=Path, default=Path("/tmp/duopath-bench"))
    ap.add_argument("--out", type=Path, default=Path("bench/results/embed_cpu.json"))
    args = ap.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    for name in ("duopath.encoding.extract",):
        logging.getLogger(name).setLevel(logging.WARNING)
    device = resolve_device(args.device)
    if args.compile_only:
        compile_only(args.compile_only, args, device)
        return
    caps = dict(c.split("=") for c in args.cap)
    result: dict = {
        "machine": {"platform": platform.platform(), "cpu_count": os.cpu_count(),
                    "torch": torch.__version__, "python": platform.python_version(),
                    "device": str(device),
                    "gpu": torch.cuda.get_device_name(device) if device.type == "cuda" else None},
        "date": time.strftime("%Y-%m-%d %H:%M"), "args": {k: str(v) for k, v in vars(args).items()},
    }
    t_all = time.perf_counter()
    big = args.work / f"big_{args.tiles_20x}_{args.mpp}.tif"
    result["slide"] = (make_slide(big, args.tiles_20x, mpp=args.mpp, threads=args.workers)
                       if not big.exists() else {"path": str(big), "reused": True})
    big_tiles, result["slide"]["prep"] = prepare_tiles(big, args.work / "prep")
    result["process"] = process_costs()
    small = []
    for i in range(args.small_slides):
        p = args.work / f"small_{i}_{args.small_tiles}_{args.mpp}.tif"
        if not p.exists():
            make_slide(p, args.small_tiles, mpp=args.mpp, seed=100 + i, threads=args.workers)
        small.append((p, prepare_tiles(p, args.work / "prep")[0]))

    result["encoders"] = {}
    for name in args.encoders.split(","):
        t0 = time.perf_counter()
        ckpt = random_checkpoint(name, args.work / f"{name}_random.pt")
        cfg = EncoderConfig(name=name, weights=ckpt, batch_size=args.batch, num_workers=args.workers,
                            device=str(device))
        enc = load_encoder(name, ckpt, device=device)
        r: dict = {"load_s": round(time.perf_counter() - t0, 2), "dim": enc.spec.dim}
        tiles = big_tiles
        if name in caps:
            tiles = args.work / "prep" / f"big_cap{caps[name]}.parquet"
            prepare_capped(big, tiles, int(caps[name]), args.work / "prep")
        run = Runner(enc, device)
        r["pure"] = pure_forward(run, args.batch, device, args.pure_seconds)
        log.info("%s pure forward: %s", name, r["pure"])
        # warm-up (first-batch costs belong to the fixed cost, not to throughput)
        embed_slides([SlideJob(small[0][0], small[0][1], args.work / "warm.zarr", "warm")], cfg,
                     encoder=enc)
        store = args.work / f"big_{name}.zarr"
        r["duopath"] = duopath_run(enc, cfg, big, tiles, store, device)
        r["duopath"]["ratio_to_pure"] = round(r["duopath"]["tiles_per_s"] / r["pure"]["tiles_per_s"], 3)
        log.info("%s duopath: %s", name, r["duopath"])
        if not args.no_peer:
            r["peer_clam_pattern"] = peer_run(enc, big, tiles, store, device, args.workers, args.batch)
            peer_rate = r["peer_clam_pattern"]["tiles_per_s"]
            r["duopath_over_peer"] = round(r["duopath"]["tiles_per_s"] / peer_rate, 2)
            log.info("%s peer: %s", name, r["peer_clam_pattern"])
        if args.compile:
            r["pure_compiled"] = compiled_forward(enc, args, device)
        result["encoders"][name] = r
        del enc, run
        if device.type == "cuda":
            torch.cuda.empty_cache()
        _save(args.out, result)

    result["fixed_cost"] = {}
    for name in [n for n in args.fixed_encoders.split(",") if n]:
        weights = None if name == "efficientnet_lite0" else random_checkpoint(
            name, args.work / f"{name}_random.pt")
        cfg = EncoderConfig(name=name, weights=weights, batch_size=args.batch,
                            num_workers=min(args.workers, 4), device=str(device))
        result["fixed_cost"][name] = fixed_cost(cfg, small, args.work / f"fixed_{name}")
        log.info("%s fixed cost: %s", name, result["fixed_cost"][name])
        _save(args.out, result)
    result["total_s"] = round(time.perf_counter() - t_all, 1)
    _save(args.out, result)


def compiled_forward(enc, args: argparse.Namespace, device: torch.device) -> dict:
    """Pure forward of the ``torch.compile``-d encoder (compile time reported apart)."""
    t0 = time.perf_counter()
    run = Runner(enc, device, compile_model=True)
    pure_forward(run, args.batch, device, 0.1)  # compiles
    compile_s = time.perf_counter() - t0
    out = {**pure_forward(run, args.batch, device, args.pure_seconds), "compile_s": round(compile_s, 1)}
    log.info("%s compiled pure forward: %s", enc.spec.name, out)
    return out


def compile_only(name: str, args: argparse.Namespace, device: torch.device) -> None:
    """Add ``name``'s compiled pure forward (and its ratio to the eager one) to ``--out``."""
    result = json.loads(args.out.read_text()) if args.out.exists() else {"encoders": {}}
    ckpt = random_checkpoint(name, args.work / f"{name}_random.pt")
    r = result.setdefault("encoders", {}).setdefault(name, {})
    r["pure_compiled"] = compiled_forward(load_encoder(name, ckpt, device=device), args, device)
    if "pure" in r:
        r["pure_compiled"]["speedup_over_eager"] = round(
            r["pure_compiled"]["tiles_per_s"] / r["pure"]["tiles_per_s"], 3)
    _save(args.out, result)


def prepare_capped(slide: Path, dest: Path, k: int, work: Path) -> None:
    """The big slide's tile table cut to ``k`` coarse tiles (spatially even), children kept."""
    import shutil

    capped, _ = prepare_tiles(slide, work / f"cap{k}", max_tiles=k)
    shutil.copy(capped, dest)


def _save(path: Path, result: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(result, indent=2) + "\n")
    tmp.replace(path)


if __name__ == "__main__":
    main()
