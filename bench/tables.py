"""Markdown tables of bench/results/embed_*.json and train_*.json, for bench/README.md.

Usage: ``python bench/tables.py bench/results/embed_gpu.json bench/results/train_gpu.json``
"""

from __future__ import annotations

import json
import sys
from pathlib import Path


def _get(d: dict, *keys: str, default: object = "–") -> object:
    for k in keys:
        if not isinstance(d, dict) or k not in d or d[k] is None:
            return default
        d = d[k]
    return d


def embed_tables(res: dict) -> str:
    m = res["machine"]
    lines = [f"Machine: {m.get('gpu') or 'CPU only'}, {m['cpu_count']} CPU cores, torch {m['torch']} "
             f"({res['date']}).", "",
             "| encoder | pure forward tiles/s | duopath tiles/s | ratio | GPU util % | CPU cores | "
             "busy | peer (CLAM pattern) tiles/s | duopath / peer | feature cosine (min) |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for name, r in res.get("encoders", {}).items():
        d, p = r.get("duopath", {}), r.get("peer_clam_pattern", {})
        lines.append(
            f"| {name} | {_get(r, 'pure', 'tiles_per_s')} | {d.get('tiles_per_s', '–')} | "
            f"{d.get('ratio_to_pure', '–')} | {d.get('gpu_util_mean_pct') or '–'} | "
            f"{d.get('cpu_cores_used', '–')} | {_get(d, 'stages', 'busy_fraction')} | "
            f"{p.get('tiles_per_s', '–')} | {r.get('duopath_over_peer', '–')} | "
            f"{p.get('feature_cosine_min', '–')} |")
    lines += ["", "Where duopath's time went (seconds; worker stages are CPU seconds summed over "
              "workers, device stages are device seconds):", "",
              "| encoder | tiles | wall | wait | read+decode | convert | resize | h2d | preprocess | "
              "forward | d2h | write |", "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for name, r in res.get("encoders", {}).items():
        s = _get(r, "duopath", "stages", default={})
        if s:
            cols = ("n_tiles", "wall_s", "wait_s", "read_decode_s", "convert_s", "resize_s", "h2d_s",
                    "preprocess_s", "forward_s", "d2h_s", "write_s")
            lines.append(f"| {name} | " + " | ".join(str(s.get(c, "–")) for c in cols) + " |")
    fixed = res.get("fixed_cost", {})
    if fixed:
        lines += ["", "Fixed cost of an `embed` job (N small slides: N processes vs one):", "",
                  "| encoder | slides × tiles | per slide, one job each (s) | per slide, one job for all "
                  "(s) | fixed cost per slide before → after (s) | weight load + setup (s) |",
                  "|---|---|---|---|---|---|"]
        for name, f in fixed.items():
            lines.append(f"| {name} | {f['slides']} × {f['tiles_per_slide']} | "
                         f"{f['wall_per_slide_before_s']} | {f['wall_per_slide_after_s']} | "
                         f"{f['fixed_cost_per_slide_before_s']} → {f['fixed_cost_per_slide_after_s']} | "
                         f"{f['weight_load_and_setup_s']} |")
    proc = res.get("process")
    if proc:
        lines += ["", "Process start alone: " + ", ".join(f"{k} {v} s" for k, v in proc.items()) + "."]
    return "\n".join(lines)


def train_table(res: dict) -> str:
    m = res["machine"]
    lines = [f"Machine: {m.get('gpu') or 'CPU only'} ({m.get('gpu_memory_gb') or '–'} GB), "
             f"torch threads {m['torch_threads']}, feature dim {res['feature_dim']}.", "",
             "| model | 20x / 10x tiles | train step, capped (s) | peak MB | train step, full bag (s) "
             "| peak MB | inference, full bag (s) | peak MB | student: tile stage / ITA / after ITA (s) |",
             "|---|---|---|---|---|---|---|---|---|"]
    for r in res["rows"]:
        st = r.get("student_forward_stages")
        split = " / ".join(str(st[k]) for k in ("tile_stage_s", "ita_s", "after_ita_s")) if st else "–"
        lines.append(f"| {r['model']} | {r['tiles_20x']} / {r['tiles_10x']} | "
                     f"{r['train_capped_step_s']} | {r['train_capped_peak_mb']} | "
                     f"{r.get('train_full_step_s', '–')} | {r.get('train_full_peak_mb', '–')} | "
                     f"{r['inference_full_s']} | {r['inference_full_peak_mb']} | {split} |")
    return "\n".join(lines)


def main() -> None:
    for arg in sys.argv[1:]:
        res = json.loads(Path(arg).read_text())
        print(f"**{Path(arg).name}**\n")
        print(train_table(res) if "rows" in res else embed_tables(res))
        print()


if __name__ == "__main__":
    main()
