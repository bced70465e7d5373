"""Training at real scale: teacher and student step time and peak memory versus tiles per patient.

A patient bag of N tiles at 20x and N/4 at 10x (the nested grid: every 10x tile has its 2x2 20x
children, ``parent`` set), 1024-d features (a ViT-L encoder's width), tile centres on a square
grid in µm. For each N, with the project's own models, losses and subsampling:

- ``train_capped``: one optimiser step (the training's own step functions, training.objectives:
  task loss on every expert + IGC and CGC for the teacher; backward, AdamW) on
  ``optim.batch_size`` patients subsampled as training does
  (``max_tiles_train`` coarse tiles per patient, children follow: training.data.subsample_bag);
- ``train_full``: the same step on ONE patient's full bag (what training would cost uncapped);
- ``inference_full``: a no-grad forward over one full bag (evaluation always uses all tiles).

Peak memory: ``torch.cuda.max_memory_allocated`` per measurement on CUDA; on CPU the process's
resident high-water mark (monotone, so sizes run small to large). The student's forward is also
split (hooks on its own submodules, no copy of its code): tile stage (projection + kNN attention +
FFN), ITA (ω, DPC-KNN, merge) and after ITA (prototype pooling + head), which must not grow with N.

Usage: ``python bench/train.py --sizes 1000,2000,5000,10000,20000,50000 --out ...``
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import platform
import resource
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import torch

from duopath.config import StudentConfig, TeacherConfig
from duopath.models import build_model
from duopath.training.architectures import student_arch, teacher_arch
from duopath.training.batch import Sample, collate
from duopath.training.data import MagBag, PatientBag, subsample_bag
from duopath.training.objectives import student_step, teacher_step

log = logging.getLogger("bench")
MAGS = ["10x", "20x"]
N_GENES = 300
N_BINS = 4


def make_bag(pid: str, n20: int, dim: int, rng: np.random.Generator) -> PatientBag:
    """A nested 10x/20x bag: n20 // 4 coarse tiles on a square grid, each with its 2x2 children."""
    n10 = max(1, n20 // 4)
    side = math.ceil(math.sqrt(n10))
    gy, gx = np.divmod(np.arange(n10), side)
    c10 = np.stack([gx, gy], 1).astype(np.float32) * 224 + 112  # centres in µm (224 µm tiles)
    kids = np.repeat(np.arange(n10), 4)
    off = np.tile(np.array([[-56, -56], [56, -56], [-56, 56], [56, 56]], np.float32), (n10, 1))
    c20 = c10[kids] + off
    feats = {m: rng.standard_normal((n, dim), dtype=np.float32).astype(np.float16)
             for m, n in (("10x", n10), ("20x", 4 * n10))}
    zeros = {m: np.zeros(len(feats[m]), np.int64) for m in MAGS}
    return PatientBag(pid, ("s0",), {
        "10x": MagBag(feats["10x"], c10, np.full(n10, -1, np.int64), zeros["10x"], 224.0),
        "20x": MagBag(feats["20x"], c20, kids.astype(np.int64), zeros["20x"], 112.0),
    })


def sample(pid: str, rng: np.random.Generator) -> Sample:
    return Sample(pid, rng.standard_normal(N_GENES).astype(np.float32),
                  rng.standard_normal(N_GENES).astype(np.float32), int(rng.integers(N_BINS)),
                  float(rng.integers(2)), float(rng.uniform(1, 100)))


class Meter:
    """Wall time (synchronised) and peak memory of one measured block."""

    def __init__(self, device: torch.device) -> None:
        self.device = device

    def __enter__(self) -> Meter:
        if self.device.type == "cuda":
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
        self.t0 = time.perf_counter()
        return self

    def __exit__(self, *exc: object) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize()
            self.peak_mb = torch.cuda.max_memory_allocated() / 2**20
        else:
            self.peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        self.seconds = time.perf_counter() - self.t0


def build(kind: str, dim: int, device: torch.device) -> tuple[torch.nn.Module, TeacherConfig]:
    tcfg = TeacherConfig(magnifications=MAGS)
    data = SimpleNamespace(genes=SimpleNamespace(genes_T=[0] * N_GENES, genes_E=[0] * N_GENES),
                           n_classes=N_BINS, task="survival")
    if kind == "teacher":
        arch = teacher_arch(tcfg, data, dim)
    else:
        arch = student_arch(StudentConfig(), data, dim, MAGS, teacher_dim=tcfg.dim)
    torch.manual_seed(0)
    return build_model(kind, arch).to(device), tcfg


def step_fn(model, kind: str, tcfg: TeacherConfig):
    """The training's own step (teacher: every expert's task loss + IGC, CGC after backward;
    student: task loss, no distillation target: its teacher forward is the teacher's inference)."""
    data = SimpleNamespace(task="survival", class_weights=None)
    if kind == "teacher":
        return teacher_step(model, data, tcfg, MAGS)
    return student_step(model, data, StudentConfig(), tcfg, MAGS, None)


def step(fn, samples, batch, opt) -> None:
    """One optimiser step as ``training.loop`` takes it (zero_grad, backward, after-backward, step)."""
    out = fn(samples, batch)
    opt.zero_grad(set_to_none=True)
    out.loss.backward()
    if out.after_backward is not None:
        out.after_backward()
    opt.step()


def student_stage_times(model, batch, device: torch.device, repeats: int) -> dict[str, float]:
    """Forward seconds of the student's tile stage, ITA and after-ITA part (20x expert)."""
    expert, head = model.experts["20x"], model.heads["20x"]
    marks: dict[str, float] = {}

    def at(name: str):
        def hook(*_):
            if device.type == "cuda":
                torch.cuda.synchronize()
            marks[name] = time.perf_counter()
        return hook

    handles = [expert.proj.register_forward_pre_hook(at("start")),
               expert.ffn.register_forward_hook(at("tiles_done")),
               expert.key.register_forward_pre_hook(at("ita_done")),
               head.register_forward_hook(at("end"))]
    acc = {"tile_stage_s": 0.0, "ita_s": 0.0, "after_ita_s": 0.0}
    try:
        with torch.no_grad():
            for _ in range(repeats):
                model(batch.feats, batch.mask, batch.coords)
                acc["tile_stage_s"] += marks["tiles_done"] - marks["start"]
                acc["ita_s"] += marks["ita_done"] - marks["tiles_done"]
                acc["after_ita_s"] += marks["end"] - marks["ita_done"]
    finally:
        for h in handles:
            h.remove()
    return {k: round(v / repeats, 5) for k, v in acc.items()}


def measure(kind: str, n20: int, dim: int, device: torch.device, repeats: int,
            full_train: bool) -> dict:
    rng = np.random.default_rng(n20)
    model, tcfg = build(kind, dim, device)
    cap = tcfg.max_tiles_train if kind == "teacher" else StudentConfig().max_tiles_train
    b = tcfg.optim.batch_size
    bags = [make_bag(f"p{i}", n20, dim, rng) for i in range(b)]
    samples = [sample(bag.patient_id, rng) for bag in bags]
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    fn = step_fn(model, kind, tcfg)
    row: dict = {"model": kind, "tiles_20x": 4 * len(bags[0].mags["10x"]),
                 "tiles_10x": len(bags[0].mags["10x"]), "max_tiles_train": cap, "batch_patients": b}
    model.train()
    sub = [subsample_bag(bag, MAGS, cap, rng) for bag in bags]
    capped = collate(samples, sub, MAGS).to(device)
    step(fn, samples, capped, opt)  # warm-up
    with Meter(device) as m:
        for _ in range(repeats):
            step(fn, samples, capped, opt)
    row.update(train_capped_step_s=round(m.seconds / repeats, 4), train_capped_peak_mb=round(m.peak_mb))
    full = collate(samples[:1], bags[:1], MAGS).to(device)
    if full_train:
        try:
            with Meter(device) as m:
                step(fn, samples[:1], full, opt)
            row.update(train_full_step_s=round(m.seconds, 4), train_full_peak_mb=round(m.peak_mb))
        except torch.OutOfMemoryError:
            row.update(train_full_step_s=None, train_full_peak_mb="OOM")
            torch.cuda.empty_cache()
    model.eval()
    with torch.no_grad(), Meter(device) as m:
        for _ in range(repeats):
            model(*((full.feats, full.mask, full.coords, full.genes_T, full.genes_E)
                    if kind == "teacher" else (full.feats, full.mask, full.coords)))
    row.update(inference_full_s=round(m.seconds / repeats, 4), inference_full_peak_mb=round(m.peak_mb))
    if kind == "student":
        row["student_forward_stages"] = student_stage_times(model, full, device, repeats)
    del model, opt, capped, full
    if device.type == "cuda":
        torch.cuda.empty_cache()
    log.info("%s", row)
    return row


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--sizes", default="1000,2000,5000,10000")
    ap.add_argument("--dim", type=int, default=1024)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--device", default="auto")
    ap.add_argument("--no-full-train", action="store_true", help="skip the uncapped train step")
    ap.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    ap.add_argument("--out", type=Path, default=Path("bench/results/train_cpu.json"))
    args = ap.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device("cuda" if args.device == "auto" and torch.cuda.is_available()
                          else ("cpu" if args.device == "auto" else args.device))
    result = {
        "machine": {"platform": platform.platform(), "cpu_count": os.cpu_count(),
                    "torch_threads": torch.get_num_threads(), "torch": torch.__version__,
                    "python": sys.version.split()[0], "device": str(device),
                    "gpu": torch.cuda.get_device_name(device) if device.type == "cuda" else None,
                    "gpu_memory_gb": round(torch.cuda.get_device_properties(device).total_memory / 1e9, 1)
                    if device.type == "cuda" else None},
        "date": time.strftime("%Y-%m-%d %H:%M"), "feature_dim": args.dim, "rows": [],
    }
    for n in (int(s) for s in args.sizes.split(",")):
        for kind in ("teacher", "student"):
            result["rows"].append(measure(kind, n, args.dim, device, args.repeats, not args.no_full_train))
            args.out.parent.mkdir(parents=True, exist_ok=True)
            args.out.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
