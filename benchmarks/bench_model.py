"""CPU latency of the CainGAN networks at batch 1, as the Reenactor runs them.

Measures, after warm-up, the median of: a generator forward, and a targeted embedding of K=1 and
K=8 sources, for the paper config (224²) and the bundled small config (128²), in fp32 and under
bf16 autocast. Spectral norms are baked in first and inference_mode is on, as in Reenactor.
Writes the "## Model (caingan/)" section of docs/benchmarks.md (other sections are kept).

    OMP_NUM_THREADS=2 python benchmarks/bench_model.py --threads 2
    python benchmarks/bench_model.py --configs small --width 0.25 --embed 32 --no-write   # tuning
"""

from __future__ import annotations

import argparse
import contextlib
import os
import re
import shlex
import sys
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
from report import cpu_name, load_avg, median_ms, replace_section  # noqa: E402  (benchmarks/report.py)

from caingan.config import ModelConfig  # noqa: E402
from caingan.pipeline.inference import optimize_for_inference  # noqa: E402
from caingan.nn.model import CainGAN, count_parameters  # noqa: E402

SECTION = "## Model (caingan/)"


def cpu_flags() -> str:
    try:
        flags = set(re.findall(r"\b(avx512_bf16|amx_bf16|avx512f|avx2)\b", Path("/proc/cpuinfo").read_text()))
    except OSError:
        return "?"
    return " ".join(sorted(flags)) or "none of avx2/avx512/amx"


def bench_config(name: str, cfg: ModelConfig, precisions: list[str], warmup: int, repeats: int):
    torch.manual_seed(0)
    model = CainGAN(cfg).eval()
    n_e, n_g = count_parameters(model.embedder), count_parameters(model.generator)
    model = optimize_for_inference(model, torch.device("cpu"))
    s = cfg.image_size
    h = s // 4
    target = torch.rand(1, 3, s, s) * 2 - 1
    e = torch.randn(1, cfg.embed_channels, h, h)
    srcs = {k: (torch.rand(1, k, 3, s, s) * 2 - 1, torch.rand(1, k, 3, s, s) * 2 - 1) for k in (1, 8)}
    rows = []
    for prec in precisions:
        ctx = (lambda: torch.autocast("cpu", dtype=torch.bfloat16)) if prec == "bf16" \
            else contextlib.nullcontext

        def gen():
            with torch.inference_mode(), ctx():
                model.generator(target, e)

        def emb(k):
            def run():
                with torch.inference_mode(), ctx():
                    model.embedder(*srcs[k], target)
            return run

        row = {"config": name, "size": s, "width": cfg.width, "embed": cfg.embed_channels,
               "params_e": n_e, "params_g": n_g, "precision": prec,
               "g_ms": median_ms(gen, repeats, warmup),
               "e1_ms": median_ms(emb(1), repeats, warmup),
               "e8_ms": median_ms(emb(8), repeats, max(1, warmup - 1))}
        rows.append(row)
        print(f"{name:>6} {s}² w={cfg.width} C_e={cfg.embed_channels} {prec}: G {row['g_ms']:.1f} ms, "
              f"E K=1 {row['e1_ms']:.1f} ms, E K=8 {row['e8_ms']:.1f} ms "
              f"(E {n_e / 1e6:.2f} M, G {n_g / 1e6:.2f} M params)", flush=True)
    return rows


NOTES = """The bundled model is `ModelConfig.small()`; its budget on a 2-core CPU is ≤ 80 ms per
generator forward and ≤ 150 ms per K=8 targeted embedding (batch 1, 128²). The Reenactor uses
fp32 on CPU: bf16 autocast only pays off with AMX (recent Xeons). On the AMD EPYC hosts of this
project it was 6–10× *slower* than fp32 (small G 367 ms, paper G 11.6 s, measured with
`--precisions bf16`), even where the CPU lists avx512_bf16.

Tuning (fp32, 2 threads, channels-last, candidates interleaved in one process while the CPU was
≥ 95 % idle, 9 runs, median (min–max) ms):

| width | embed ch | G forward | E K=8 |
|---|---|---|---|
| 0.25 | 32 | 44 (40–53) | 88 (79–96) |
| 0.28125 | 56 | 54 (52–58) | 103 (98–116) |
| 0.3125 | 64 | 60 (59–72) | 122 (114–132) |
| 0.34375 | 44 | 70 | 138 (5 runs) |
| 0.375 | 48 | 75 | 158 (5 runs; over budget) |

Chosen: width 0.25 (channels 16/32/64/128), embed_channels 32. Width 0.3125 fits the generator
budget alone, but the editor's drag-to-preview target at K=1 (≤ 60 ms) pays for the K=1 embedding
*and* the generator (44 + ~12 ms at 0.25 vs 60 + 17 ms at 0.3125), and every training step on this
CPU costs ~1.6× more at 0.3125.
Channels-last weights gave ~10 % on G and ~15 % on E over NCHW, so the Reenactor uses them.
"""


def write_section(rows, command: str, threads: int, load_before: str, load_after: str) -> Path:
    lines = [
        SECTION, "",
        f"Command: `{command}`", "",
        f"Machine: {cpu_name()} ({os.cpu_count()} logical CPUs; flags: {cpu_flags()}), "
        f"torch {torch.__version__}, {threads} threads, batch 1, median after warm-up. "
        f"1-min load average before/after the run: {load_before}/{load_after} (the CPU is shared with "
        "other jobs; expect 10–20 % noise, more when the load was high).",
        "", "Spectral norms baked in, channels-last weights and `torch.inference_mode()`, exactly as `caingan.pipeline.inference.Reenactor` runs on CPU.",
        "bf16 = `torch.autocast('cpu', torch.bfloat16)`; it only pays off on CPUs with AMX/AVX512-BF16.",
        "",
        "| config | size | width | embed ch | E params | G params | precision | G forward ms | E K=1 ms | E K=8 ms |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(f"| {r['config']} | {r['size']}² | {r['width']} | {r['embed']} | "
                     f"{r['params_e'] / 1e6:.2f} M | {r['params_g'] / 1e6:.2f} M | {r['precision']} | "
                     f"{r['g_ms']:.1f} | {r['e1_ms']:.1f} | {r['e8_ms']:.1f} |")
    lines += ["", NOTES]
    section = "\n".join(lines)
    return replace_section(REPO / "docs" / "benchmarks.md", SECTION, section)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--configs", nargs="+", default=["small", "paper"], choices=["paper", "small"])
    p.add_argument("--precisions", nargs="+", default=["fp32", "bf16"], choices=["fp32", "bf16"])
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--repeats", type=int, default=7, help="timed runs (the paper config uses half)")
    p.add_argument("--width", type=float, help="override the small config's width (tuning)")
    p.add_argument("--embed", type=int, help="override the small config's embed_channels (tuning)")
    p.add_argument("--no-write", action="store_true", help="print only; leave docs/benchmarks.md alone")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    load_before = load_avg()
    rows = []
    for name in args.configs:
        cfg = getattr(ModelConfig, name)()
        if name == "small" and args.width:
            cfg.width = args.width
        if name == "small" and args.embed:
            cfg.embed_channels = args.embed
        slow = name == "paper"  # seconds per call here: fewer runs keep the shared CPU usable
        rows += bench_config(name, cfg, args.precisions, 1 if slow else args.warmup,
                             max(3, args.repeats // 2) if slow else args.repeats)
    if not args.no_write:
        cmd = " ".join(["python", "benchmarks/bench_model.py", *map(shlex.quote, sys.argv[1:] if argv is None else argv)])
        print("wrote", write_section(rows, cmd, args.threads, load_before, load_avg()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
