"""The paper's comparison under one budget: CainGAN, its ablations and the two baselines.

Every method trains for the same number of steps on the same cache, seed, batch and K, then
caingan-eval (train.evaluation.run) scores them all on the same held-out frames. Each run resumes where it stopped
(train.train's own resume), so the sweep can be killed and re-run at any time.

    python -m train.evaluation.ablations --cache ~/.cache/caingan/data/s64 --steps 500 --out runs/ablations
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

# name → extra train.train flags
METHODS = {
    "CainGAN": [],
    "Warp-guided CainGAN": ["--preset", "warp"],
    "w/o T": ["--ablation", "wo_t"],
    "w/o R": ["--ablation", "wo_r"],
    "w/o I": ["--ablation", "wo_i"],
    "FSHM": ["--arch", "fshm"],
    "pix2pixHD": ["--arch", "pix2pixhd"],
}


# objective → train.train flags, the same for every method of a sweep
OBJECTIVES = {
    "paper": ["--amp", "none"],
    "recon": ["--d-steps", "0", "--lambda-l1", "10", "--lambda-region", "10", "--lambda-id", "2",
              "--betas", "0.9", "0.999", "--lr-g", "2e-4", "--amp", "bf16"],
}


def run_dir_name(name: str) -> str:
    return name.lower().replace("/", "").replace(" ", "_")


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--cache", required=True)
    p.add_argument("--out", default="runs/ablations", help="one run directory per method inside")
    p.add_argument("--steps", type=int, default=500)
    p.add_argument("--preset", default="small")
    p.add_argument("--image-size", type=int, default=64)
    p.add_argument("--k", type=int, default=4, help="sources per training sample")
    p.add_argument("--batch-size", type=int, default=4)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--methods", nargs="+", default=list(METHODS), choices=list(METHODS))
    p.add_argument("--eval-k", type=int, nargs="+", default=[1, 4, 8])
    p.add_argument("--targets", type=int, default=8, help="target frames per test clip")
    p.add_argument("--report", default="docs/RESULTS.md")
    p.add_argument("--objective", choices=list(OBJECTIVES), default="paper",
                   help="paper: hinge GAN + FM + perceptual (eq. 5); recon: L1 + eyes/mouth L1 + "
                        "identity + perceptual, no discriminator (the CPU phase of the default model)")
    p.add_argument("--skip-eval", action="store_true")
    return p.parse_args(argv)


def main(argv=None) -> int:
    a = parse_args(argv)
    out = Path(a.out)
    env = dict(os.environ, OMP_NUM_THREADS=str(a.threads))
    checkpoints = []
    for name in a.methods:
        run = out / run_dir_name(name)
        cmd = [sys.executable, "-m", "train.train", "--cache", a.cache, "--run-dir", str(run),
               "--preset", a.preset, "--image-size", str(a.image_size), "--k", str(a.k),
               "--batch-size", str(a.batch_size), "--samples-per-clip", "8", "--num-workers", "0",
               "--threads", str(a.threads), "--max-steps", str(a.steps), "--save-every", "100",
               "--image-every", "250", "--log-every", "25", "--keep-last", "1",
               "--perceptual", "vgg16_hed", "--seed", "0", *OBJECTIVES[a.objective], *METHODS[name]]
        print(f"== {name}: {' '.join(cmd[1:])}", flush=True)
        rc = subprocess.call(cmd, env=env)
        if rc != 0:
            print(f"{name}: training exited with {rc}", file=sys.stderr)
            return rc
        checkpoints += ["--checkpoint", f"{name}={run}"]
    if a.skip_eval:
        return 0
    cmd = [sys.executable, "-m", "train.evaluation.run", "--cache", a.cache, *checkpoints,
           "--k", *map(str, a.eval_k), "--targets", str(a.targets), "--threads", str(a.threads),
           "--out", a.report]
    print(f"== evaluate: {' '.join(cmd[1:])}", flush=True)
    return subprocess.call(cmd, env=env)


if __name__ == "__main__":
    sys.exit(main())
