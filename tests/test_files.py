"""caingan.files: atomic writes (no half files, no temp files left, normal permissions), hashing."""

from __future__ import annotations

import hashlib
import os
import stat

import pytest

from caingan.files import AtomicFile, atomic_write, file_hash, is_temp_of


def _listing(folder):
    return sorted(p.name for p in folder.iterdir())


def test_bytes_text_and_callable_land_whole(tmp_path):
    assert atomic_write(tmp_path / "a.bin", b"\x00\x01") == tmp_path / "a.bin"
    atomic_write(tmp_path / "b.txt", "grüße")
    atomic_write(tmp_path / "c.dat", lambda f: [f.write(b"x" * 1000) for _ in range(3)])
    assert (tmp_path / "a.bin").read_bytes() == b"\x00\x01"
    assert (tmp_path / "b.txt").read_text(encoding="utf-8") == "grüße"
    assert (tmp_path / "c.dat").read_bytes() == b"x" * 3000
    assert _listing(tmp_path) == ["a.bin", "b.txt", "c.dat"]


def test_failure_keeps_old_file_and_leaves_no_temp(tmp_path):
    target = tmp_path / "keep.json"
    atomic_write(target, "old")

    def boom(f):
        f.write(b"half of the new")
        raise RuntimeError("disk on fire")

    with pytest.raises(RuntimeError, match="disk on fire"):
        atomic_write(target, boom)
    assert target.read_text() == "old" and _listing(tmp_path) == ["keep.json"]
    # The rename itself failing (the target is a folder) also cleans up.
    (tmp_path / "folder").mkdir()
    with pytest.raises(OSError):
        atomic_write(tmp_path / "folder", b"data")
    assert _listing(tmp_path) == ["folder", "keep.json"]


@pytest.mark.parametrize("umask, mode", [(0o022, 0o644), (0o077, 0o600), (0o002, 0o664)])
def test_mode_follows_umask_not_mkstemp(tmp_path, umask, mode):
    old = os.umask(umask)
    try:
        atomic_write(tmp_path / "f", b"x")
        with AtomicFile(tmp_path / "g") as af:
            af.file.write(b"y")
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "f").stat().st_mode) == mode
    assert stat.S_IMODE((tmp_path / "g").stat().st_mode) == mode


def test_atomic_file_appears_only_on_commit(tmp_path):
    af = AtomicFile(tmp_path / "video.mp4")
    af.file.write(b"frames")
    assert not (tmp_path / "video.mp4").exists() and is_temp_of(af.temp, "video.mp4")
    af.commit()
    assert (tmp_path / "video.mp4").read_bytes() == b"frames" and not af.temp.exists()
    aborted = AtomicFile(tmp_path / "other.gif")
    aborted.file.write(b"partial")
    aborted.abort()
    assert _listing(tmp_path) == ["video.mp4"]
    with pytest.raises(KeyboardInterrupt):
        with AtomicFile(tmp_path / "third") as af:
            af.file.write(b"z")
            raise KeyboardInterrupt
    assert _listing(tmp_path) == ["video.mp4"]


def test_file_hash_is_sha256_of_the_bytes(tmp_path):
    data = os.urandom(3 << 20)
    (tmp_path / "blob").write_bytes(data)
    assert file_hash(tmp_path / "blob") == hashlib.sha256(data).hexdigest()
    assert file_hash(str(tmp_path / "blob")) == hashlib.sha256(data).hexdigest()
