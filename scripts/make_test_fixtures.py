"""Builds tests/data/ from the shared corpus: a few short clips and face photos cut from them.

Only rows whose licence allows redistribution (MIT, Apache-2.0, CC-BY-4.0, CC0) are used; each
file's origin and licence go to tests/data/SOURCES.md. The layout mirrors ../shared/data
(clips.csv, clips/, stills/<name>/<name>1..5.png), so the tests read either folder the same way.

    python scripts/make_test_fixtures.py [--data ../shared/data] [--out tests/data]
"""

from __future__ import annotations

import argparse
import csv
import shutil
from pathlib import Path

import cv2
import numpy as np

REPO = Path(__file__).resolve().parents[1]

# Clips copied whole: six small train clips of six identity groups (256², one of 240 frames); five
# test clips (two of one group), the first three those the corpus lists first, so the tests that
# take "the first test clips" see the same faces with or without the corpus.
CLIPS = [
    "clips/styletalk/samples/style_clips/video/furious_talk2_clip3.mp4",
    "clips/extra/ali-vilab__dreamtalk__data_style_clip_video_M030_front_neutral_level1_001.mp4",
    "clips/extra/ali-vilab__dreamtalk__data_style_clip_video_W011_front_happy_level3_001.mp4",
    "clips/extra/ali-vilab__dreamtalk__data_style_clip_video_W009_front_neutral_level1_001.mp4",
    "clips/styletalk/samples/style_clips/video/vscodehappy_clip1.mp4",
    "clips/styletalk/samples/style_clips/video/trump_clip1.mp4",
    "clips/edtalk/test_data/expression_source.mp4",        # the corpus's first test clips
    "clips/edtalk/test_data/pose_source1.mp4",
    "clips/liveportrait/assets/examples/driving/d3.mp4",   # 512², 354 frames
    "clips/styletalk/samples/style_clips/video/happyenglish_clip1.mp4",   # the first's group
    "clips/styletalk/samples/style_clips/video/sadfather_clip1.mp4",
]
# The photos: frames of high-resolution clips (the face several hundred pixels wide, so a 150²
# crop keeps the fine detail of a photo), one person each, named like stills/<name>/<name>1.png.
PEOPLE = [
    ("clips/liveportrait/assets/examples/source/s13.mp4", "alpha"),
    ("clips/liveportrait/assets/examples/source/s18.mp4", "bravo"),
    ("clips/liveportrait/assets/examples/source/s32.mp4", "charlie"),
    ("clips/liveportrait/assets/examples/driving/d10.mp4", "delta"),
    ("clips/extra/megvii-research__megactor__test_data_driver_1.mp4", "echo"),
    ("clips/extra/YuvalNirkin__fsgan__docs_examples_conan_obrien.mp4", "foxtrot"),
    ("clips/extra/georgeretsi__smirk__samples_skarsgard.mp4", "golf"),
    ("clips/extra/bytedance__LatentSync__assets_demo2_video.mp4", "hotel"),
]
FREE = ("MIT", "Apache-2.0", "CC-BY-4.0", "CC0")
PHOTOS = 5        # photos per person, spread over the clip
PHOTO_SIDE = 150  # the corpus stills: tight grey 150² face crops
TIGHTNESS = 1.2   # crop side over the points' extent (the corpus stills: ~1.15)


def tight_crop(frame: np.ndarray, points: np.ndarray) -> np.ndarray:
    """A grey square around the 68 points (their larger extent), like the corpus stills."""
    lo, hi = points.min(0), points.max(0)
    side = TIGHTNESS * float((hi - lo).max())
    cx, cy = (lo + hi) / 2
    cy -= 0.08 * side                     # a little forehead, as in the stills
    m = np.float32([[PHOTO_SIDE / side, 0, PHOTO_SIDE / 2 - cx * PHOTO_SIDE / side],
                    [0, PHOTO_SIDE / side, PHOTO_SIDE / 2 - cy * PHOTO_SIDE / side]])
    crop = cv2.warpAffine(frame, m, (PHOTO_SIDE, PHOTO_SIDE), flags=cv2.INTER_AREA,
                          borderMode=cv2.BORDER_REPLICATE)
    return cv2.cvtColor(crop, cv2.COLOR_RGB2GRAY)


def check_licence(row: dict) -> None:
    if not row["source"].startswith(FREE):
        raise SystemExit(f"{row['path']}: licence {row['source']!r} does not allow a copy")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data")
    ap.add_argument("--out", type=Path, default=REPO / "tests" / "data")
    args = ap.parse_args()

    from PIL import Image

    from caingan.face.landmarks import LandmarkDetector
    from caingan.media.video import VideoReader

    with open(args.data / "clips.csv", newline="") as f:
        rows = {r["path"]: r for r in csv.DictReader(f)}
    detector = LandmarkDetector("dlib")
    (args.out / "clips").mkdir(parents=True, exist_ok=True)
    out_rows, sources = [], []
    for path in CLIPS:
        row = dict(rows[path])
        check_licence(row)
        name = Path(path).name
        shutil.copyfile(args.data / path, args.out / "clips" / name)
        row["path"] = f"clips/{name}"
        out_rows.append(row)
        sources.append(f"| `clips/{name}` | `{path}` | {row['source']} |")
    for path, person in PEOPLE:
        row = rows[path]
        check_licence(row)
        folder = args.out / "stills" / person
        folder.mkdir(parents=True, exist_ok=True)
        with VideoReader(args.data / path) as reader:
            n = len(reader)
            for i in range(PHOTOS):
                index = int((i + 0.5) * n / PHOTOS)
                frame = reader.read(index)
                points = detector.detect(frame).points
                photo = folder / f"{person}{i + 1}.png"
                Image.fromarray(tight_crop(frame, points)).save(photo, optimize=True)
                sources.append(f"| `stills/{person}/{photo.name}` | frame {index} of `{path}`, "
                               f"cropped to the face, grey, {PHOTO_SIDE}² | {row['source']} |")
    with open(args.out / "clips.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(out_rows[0]))
        w.writeheader()
        w.writerows(out_rows)
    (args.out / "SOURCES.md").write_text(
        "# Test fixtures: where each file comes from\n\n"
        "Cut from the project's talking-head corpus (`../shared/data`) by "
        "`scripts/make_test_fixtures.py`, only from rows whose licence allows redistribution. "
        "Each clip is unchanged; each photo is one frame of the clip named, cropped around the "
        "face and turned grey like the corpus stills (the folder names are labels, not the "
        "people's names). The people are the ones in the published sample videos of the "
        "repositories named.\n\n"
        "| file | origin (path in the corpus) | licence (repository) |\n|---|---|---|\n"
        + "\n".join(sources) + "\n")


if __name__ == "__main__":
    main()
