"""`caingan-export`: render a driving video, landmark sequence or keyframes to PNG/MP4/GIF.

    caingan-export --source me.jpg --driving talk.mp4 --out out/ --formats png,mp4,gif

Resumable: re-running the same command continues an interrupted export and regenerates only
missing or damaged frames (caingan.pipeline.export). Exit status 0 done, 2 error (one line on
stderr, no traceback), 130 interrupted (one line; the frames so far are kept).

Ctrl-C: while the model and the inputs load it interrupts at once; while personalizing,
rendering or encoding the first one stops at the end of the batch or frame in hand and the
second at once. This module imports nothing heavy at the top, so `main` (the console script)
handles a Ctrl-C during the imports too (caingan.cli.run_main).
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from contextlib import contextmanager
from pathlib import Path
from typing import Sequence

from caingan.cli import interrupted, run_main
from caingan.config import MAX_FPS, MIN_FPS, check_fps
from caingan.errors import CainGANError

EXIT_ERROR = 2
PROG = "caingan-export"


def _fps(text: str) -> float:
    try:
        return check_fps(float(text), "--fps")
    except (ValueError, CainGANError) as e:
        raise argparse.ArgumentTypeError(
            str(e) if isinstance(e, CainGANError) else f"not a number: {text!r}") from None


def _face(text: str) -> int:
    try:
        n = int(text)
    except ValueError:
        n = 0
    if n < 1:
        raise argparse.ArgumentTypeError(f"a face number 1 or more (1 is the largest face), "
                                         f"got {text!r}")
    return n


def _steps(text: str) -> int:
    try:
        n = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"want a whole number of steps, got {text!r}") from None
    if not 1 <= n <= 100_000:
        raise argparse.ArgumentTypeError(f"steps must be in 1..100000, got {n}")
    return n


def _gif_scale(text: str) -> float:
    try:
        s = float(text)
    except ValueError:
        s = float("nan")
    if not 0.05 <= s <= 1:
        raise argparse.ArgumentTypeError(f"a factor from 0.05 to 1, got {text!r}")
    return s


def build_parser() -> argparse.ArgumentParser:
    from caingan.assets import DEFAULT_WEIGHTS
    from caingan.pipeline.personalize import DEFAULT_STEPS

    p = argparse.ArgumentParser(
        prog="caingan-export",
        description="Render many target poses of the source face(s) to a PNG sequence, MP4 "
                    "and/or GIF. Resumable: re-running the same command continues an "
                    "interrupted export and regenerates only missing or damaged frames.",
        epilog="Landmark files: a caingan-landmark-sequence ({\"format\": "
               "\"caingan-landmark-sequence\", \"image_size\": S, \"fps\": 25, \"frames\": "
               "[[[x, y] x 68], ...]}, points in an S x S source crop), the editor's saved pose "
               "(one frame) or a caingan-keyframes file. Exit status: 0 done, 2 error, "
               "130 interrupted (frames so far are kept).")
    p.add_argument("--weights", default=str(DEFAULT_WEIGHTS),
                   help="model checkpoint (default: the bundled %(default)s)")
    p.add_argument("--source", action="append", required=True, metavar="PHOTO",
                   help="source photo (repeat for 1-16 photos of one person; the first is the "
                        "target person for driving videos and --paste-back)")
    p.add_argument("--face", action="append", type=_face, metavar="N",
                   help="which face of a source photo with several: 1 the largest (default), "
                        "2 the second largest, ...; once for every photo or once per --source")
    drv = p.add_mutually_exclusive_group(required=True)
    drv.add_argument("--driving", metavar="VIDEO",
                     help="driving video: its facial motion is transferred to the source")
    drv.add_argument("--landmarks", metavar="JSON",
                     help="landmark sequence (or single pose) to render, one frame per pose")
    drv.add_argument("--keyframes", metavar="JSON",
                     help="keyframe file (caingan.face.keyframes), interpolated frame by frame")
    p.add_argument("--out", required=True, metavar="DIR", help="output folder")
    p.add_argument("--formats", default="png,mp4",
                   help="comma-separated subset of png,mp4,gif (default: %(default)s)")
    p.add_argument("--fps", type=_fps, default=None,
                   help=f"frame rate of the MP4/GIF, {MIN_FPS:g} to {MAX_FPS:g} (default: the "
                        f"input's; a video whose own rate is missing or outside that range "
                        f"gets 25, with a warning)")
    p.add_argument("--gif-scale", type=_gif_scale, default=1.0, metavar="F",
                   help="size of the GIF relative to the frames, e.g. 0.5 (default: 1)")
    p.add_argument("--paste-back", action="store_true",
                   help="paste each generated face back into the first source photo")
    p.add_argument("--neutral-frame", type=int, default=0, metavar="N",
                   help="driving video frame whose pose counts as neutral (default: 0, the "
                        "first frame with a face)")
    p.add_argument("--batch", type=int, default=8, help="frames per model call (default: 8)")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N or mps")
    p.add_argument("--detector", default="dlib", choices=["dlib", "fa", "auto"],
                   help="landmark detector backend (default: %(default)s)")
    p.add_argument("--max-frames", type=int, default=None, metavar="N",
                   help="export at most N frames")
    p.add_argument("--personalize", type=_steps, nargs="?", const=0, default=None,
                   metavar="STEPS",
                   help="personalize to the source photos first: fit how they are blended (3 "
                        "photos or more); with STEPS, also fine-tune the generator for that many "
                        f"steps (e.g. {DEFAULT_STEPS}; measured not to help yet). Reused when the "
                        "same photos come again")
    p.add_argument("--personal-dir", default=None, metavar="DIR",
                   help="where personalizations are kept (default: $CAINGAN_PERSONAL_DIR or "
                        "~/.local/share/caingan/personal)")
    p.add_argument("--overwrite", action="store_true",
                   help="replace an export of different inputs found in --out")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    return p


def _formats(text: str) -> list[str]:
    from caingan.pipeline.export import FORMATS

    got = [f.strip().lower().lstrip(".") for f in text.split(",") if f.strip()]
    bad = [f for f in got if f not in FORMATS]
    if bad or not got:
        raise CainGANError(f"--formats: unknown {', '.join(bad) or '(empty)'}; "
                           f"use a comma-separated subset of {','.join(FORMATS)}")
    return got


def _describe_outputs(res) -> str:
    from caingan.pipeline.export import FRAME_NAME

    parts = []
    if "png" in res.outputs and res.frames:
        parts.append(f"{FRAME_NAME.format(0)} … {FRAME_NAME.format(res.frames - 1)}")
    parts += [p.name for k, p in res.outputs.items() if k != "png"]
    return ", ".join(parts) or "nothing"


class _Bars:
    """tqdm bars on stderr: frames rendered, then frames encoded. Made at the first report, so
    an error before any progress prints no empty bar."""

    def __init__(self, quiet: bool):
        self.quiet = quiet
        self.bars: dict = {}

    def _bar(self, key: str, desc: str, total, unit: str = "frame"):
        from tqdm import tqdm

        if key not in self.bars:
            self.bars[key] = tqdm(total=total, unit=unit, desc=desc, disable=self.quiet,
                                  file=sys.stderr, dynamic_ncols=True)
        return self.bars[key]

    def render(self, done: int, total: int | None) -> None:
        bar = self._bar("render", "caingan-export", total)
        if total is not None and bar.total != total:
            bar.total = total
        bar.update(done - bar.n)

    def encode(self, what: str, done: int, total: int) -> None:
        if "render" in self.bars:
            self.bars["render"].close()
        bar = self._bar("encode", f"encoding {what}", total)
        bar.update(done - bar.n)

    def close(self) -> None:
        for bar in self.bars.values():
            bar.close()


class _CtrlC:
    """The SIGINT handler: at once, except inside `stoppable()`, where the first Ctrl-C only
    sets `stop` (the work ends at its next check) and a second one interrupts at once."""

    def __init__(self):
        self.stop = False
        self._soft = False

    def __call__(self, signum, frame) -> None:
        if self._soft and not self.stop:
            self.stop = True
            return
        raise KeyboardInterrupt

    @contextmanager
    def stoppable(self):
        self._soft = True
        try:
            yield
        finally:
            self._soft = False


def _warn(message: str) -> None:
    print(f"{PROG}: warning: {message}", file=sys.stderr, flush=True)


def _run(args, ctrl_c: _CtrlC) -> int:
    from caingan.face.landmarks import LandmarkDetector
    from caingan.pipeline.export import ExportOptions, run_export
    from caingan.pipeline.export_inputs import DrivingSpec, load_sources
    from caingan.pipeline.inference import Reenactor

    formats = _formats(args.formats)
    if args.batch < 1:
        raise CainGANError(f"--batch must be >= 1, got {args.batch}")
    if args.max_frames is not None and args.max_frames < 1:
        raise CainGANError(f"--max-frames must be >= 1, got {args.max_frames}")
    from caingan.media.images import check_image_file
    for s in args.source:                 # missing, a folder, unreadable: said before the model loads
        check_image_file(s)
    reenactor = Reenactor.from_checkpoint(args.weights, device=args.device)
    detector = LandmarkDetector(args.detector)
    sources = load_sources(args.source, detector, reenactor.image_size, face=args.face or 1,
                           detail_size=reenactor.output_size)
    if args.personalize is not None:
        with ctrl_c.stoppable():
            done = _personalize(args, reenactor, sources, ctrl_c)
        if not done:
            return _interrupted(Path(args.out), 0)
    if args.driving:
        spec = DrivingSpec("video", args.driving, args.max_frames, args.neutral_frame)
    elif args.landmarks:
        spec = DrivingSpec("landmarks", args.landmarks, args.max_frames)
    else:
        spec = DrivingSpec("keyframes", args.keyframes, args.max_frames)
    out = Path(args.out)
    options = ExportOptions(out, formats, fps=args.fps, batch_size=args.batch,
                            paste_back=args.paste_back, gif_scale=args.gif_scale,
                            overwrite=args.overwrite)
    bars = _Bars(args.quiet)
    try:
        with ctrl_c.stoppable():
            res = run_export(reenactor, sources, spec, options, detector=detector,
                             progress=bars.render, encoding=bars.encode,
                             cancel=lambda: ctrl_c.stop)
    finally:
        bars.close()
    if res.cancelled:
        return _interrupted(out, res.frames)
    for message in res.warnings:
        _warn(message)
    missed = f"; no face in {res.missed} driving frames (last pose held)" if res.missed else ""
    print(f"{PROG}: {res.frames} frames from {res.description} in {out} "
          f"({res.generated} generated, {res.reused} reused from an earlier run{missed}); "
          f"wrote {_describe_outputs(res)}", flush=True)
    return 0


def _personalize(args, reenactor, sources, ctrl_c: _CtrlC) -> bool:
    """--personalize: fit to the photos (or reuse that of an earlier run); False when
    interrupted (the model is left general and nothing is saved)."""
    from tqdm import tqdm

    from caingan.face.identity import FaceIdentity, identity_outliers
    from caingan.pipeline.personal_store import PersonalStore, personalize_reenactor
    from caingan.pipeline.personalize import PersonalizeConfig

    if not reenactor.warp:
        raise CainGANError(f"--personalize needs the warp-guided model; {args.weights} is the paper's")
    store = PersonalStore(args.personal_dir)
    odd = identity_outliers(FaceIdentity().descriptors(sources.images, sources.points)) \
        if len(sources.images) > 1 else []
    if odd:
        names = ", ".join(sources.labels[i] for i in odd)
        _warn(f"{names} look{'s' * (len(odd) == 1)} like a different person than the other "
              "photos; personalizing on a mix of people blurs who they are")
    cfg = PersonalizeConfig(steps=args.personalize, tune="generator") if args.personalize \
        else PersonalizeConfig()
    bar = tqdm(total=None, unit="step", desc="personalizing", disable=args.quiet,
               file=sys.stderr, dynamic_ncols=True)

    def progress(pr) -> None:
        bar.total = pr.steps
        bar.update(pr.step - bar.n)
    try:
        images, points = sources.for_model
        p, reused = personalize_reenactor(
            reenactor, images, list(points), cfg=cfg,
            key_sources=(sources.images, sources.points), store=store, labels=sources.labels,
            progress=progress, should_stop=lambda: ctrl_c.stop,
            warn=lambda m: bar.write(f"{PROG}: warning: {m}", file=sys.stderr))
    finally:
        bar.close()
    if p is not None and not args.quiet:
        how = f"reused from {p.meta.get('created', 'an earlier run')}" if reused else \
            f"{p.meta.get('seconds', 0):.0f} s"
        print(f"{PROG}: personalized to {len(sources.images)} photo(s) ({how}; "
              f"{store.path(p.key)}): {p.summary()}", file=sys.stderr, flush=True)
    return p is not None


def _interrupted(out: Path, frames: int | None = None) -> int:
    """The one line of an interrupted export; returns EXIT_INTERRUPTED."""
    if frames is None:
        frames = 0
        if out.is_dir():
            from caingan.pipeline.export_store import count_frames
            frames = count_frames(out)
    detail = (f"the {frames} frames written so far are kept in {out}. Run the same command "
              f"again to resume." if frames else "")
    return interrupted(PROG, detail)


def cli_main(argv: Sequence[str] | None = None) -> int:
    """`caingan-export` once its module is imported; returns the exit status."""
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as e:          # argparse: --help (0) or a bad argument (2, message shown)
        return int(e.code or 0)
    ctrl_c = _CtrlC()
    previous = None
    if threading.current_thread() is threading.main_thread():
        previous = signal.signal(signal.SIGINT, ctrl_c)
    try:
        return _run(args, ctrl_c)
    except CainGANError as e:
        print(f"{PROG}: error: {e}", file=sys.stderr, flush=True)
        return EXIT_ERROR
    except KeyboardInterrupt:
        return _interrupted(Path(args.out))
    finally:
        if previous is not None:
            signal.signal(signal.SIGINT, previous)


def main(argv: Sequence[str] | None = None) -> int:
    """The console script: a Ctrl-C while the command's modules import is handled as well."""
    return run_main(PROG, lambda: cli_main, argv)


if __name__ == "__main__":
    sys.exit(main())
