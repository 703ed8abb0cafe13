"""Where personalizations live: one small checkpoint per set of sources, in the user's data
folder (never beside the bundled weights).

`<key>.safetensors` holds the parameter changes, `<key>.json` the sidecar (caingan.nn.checkpoint:
versioned, written atomically), with what the user needs to recognise it in a list: when, how many
photos, their labels, how long it took. The folder is $CAINGAN_PERSONAL_DIR, else
$XDG_DATA_HOME/caingan/personal, else ~/.local/share/caingan/personal.
"""

from __future__ import annotations

import os
import re
import tempfile
import warnings
from dataclasses import dataclass
from pathlib import Path

import torch

from caingan.assets import ASSETS
from caingan.errors import CainGANError, CheckpointError
from caingan.nn.checkpoint import checkpoint_paths, load_checkpoint, read_meta, save_checkpoint
from caingan.pipeline.personalize import KIND, Personalization, PersonalizeError

_KEY = re.compile(r"^[0-9a-f]{16,64}$")


def default_root() -> Path:
    env = os.environ.get("CAINGAN_PERSONAL_DIR")
    if env:
        return Path(env).expanduser()
    data = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(data).expanduser() / "caingan" / "personal"


@dataclass
class StoredPersonalization:
    key: str
    path: Path
    meta: dict
    bytes: int

    def describe(self) -> str:
        m = self.meta
        labels = ", ".join(m.get("labels") or [])[:60]
        return (f"{m.get('created', '?')} · {m.get('sources', '?')} photo(s)"
                + (f" ({labels})" if labels else "")
                + f" · {m.get('steps', '?')} steps, {m.get('tune', '?')} · {self.bytes / 1e6:.1f} MB")


class PersonalStore:
    def __init__(self, root: str | Path | None = None):
        self.root = Path(root).expanduser() if root is not None else default_root()
        if _inside(self.root, ASSETS):
            raise PersonalizeError(f"{self.root}: personalizations are never stored among the "
                                   "bundled weights; choose another folder")

    def path(self, key: str) -> Path:
        if not isinstance(key, str) or not _KEY.match(key):
            raise PersonalizeError(f"not a personalization key: {key!r}")
        return self.root / f"{key}.safetensors"

    def save(self, p: Personalization, labels: list[str] | None = None) -> Path:
        meta = {**p.meta, "kind": KIND, "key": p.key, "base_id": p.base_id,
                "labels": [str(x) for x in (labels or [])][:16]}
        return save_checkpoint(self.path(p.key), p.deltas, meta)

    def check_writable(self) -> None:
        """PersonalizeError naming the folder when a personalization could not be kept there
        (a file, not a folder; no permission); creates the folder."""
        where = f"the personalization folder {self.root} ($CAINGAN_PERSONAL_DIR or --personal-dir)"
        try:
            self.root.mkdir(parents=True, exist_ok=True)
            fd, probe = tempfile.mkstemp(prefix=".write-test-", dir=self.root)
            os.close(fd)
            os.unlink(probe)
        except FileExistsError:
            raise PersonalizeError(f"{where} is a file, not a folder; choose another") from None
        except OSError as e:
            raise PersonalizeError(f"{where} cannot be written: {e.strerror or e}; choose "
                                   "another") from None

    def files(self, key: str) -> tuple[Path, Path]:
        """Both files of a key: (the tensors, the JSON sidecar)."""
        return checkpoint_paths(self.path(key))

    def has(self, key: str) -> bool:
        st, js = checkpoint_paths(self.path(key))
        return st.is_file() and js.is_file()

    def load(self, key: str) -> Personalization | None:
        """The stored personalization for this key, or None when there is none. A damaged
        file raises CheckpointError naming it (and is left for the user to delete)."""
        if not self.has(key):
            return None
        tensors, meta = load_checkpoint(self.path(key), kind=KIND)
        if meta.get("key") != key or not isinstance(meta.get("base_id"), str):
            raise CheckpointError(f"{self.path(key)}: sidecar does not belong to key {key}")
        deltas = {n: t.to(torch.float16) for n, t in tensors.items()}
        return Personalization(key, meta["base_id"], deltas, meta)

    def reusable(self, key: str, cfg) -> Personalization | None:
        """The stored personalization for `key` when it was made with cfg's tune mode and blend
        setting and (when it tunes weights) at least cfg's steps — what a new run would
        give — else None."""
        found = self.load(key)
        if found is None:
            return None
        made = found.meta.get("config") or {}
        tunes = cfg.tune != "none"
        if found.meta.get("tune") == cfg.tune \
                and not made.get("flow", False) \
                and bool(made.get("blend", False)) == bool(cfg.blend) \
                and (not tunes or int(found.meta.get("steps", 0)) >= cfg.steps):
            return found
        return None

    def list(self) -> list[StoredPersonalization]:
        """Every complete personalization in the folder, newest first; unreadable ones are
        listed too (meta holds 'error') so they can be deleted."""
        out = []
        if not self.root.is_dir():
            return out
        for st in self.root.glob("*.safetensors"):
            key = st.name[: -len(".safetensors")]
            if not _KEY.match(key):
                continue
            try:
                meta = read_meta(st, kind=KIND)
            except CheckpointError as exc:
                meta = {"error": str(exc)}
            out.append(StoredPersonalization(key, st, meta, st.stat().st_size))
        return sorted(out, key=lambda e: str(e.meta.get("created", "")), reverse=True)

    def delete(self, key: str) -> bool:
        """Remove both files of a key; False when there was nothing to remove."""
        removed = False
        for f in checkpoint_paths(self.path(key)):
            try:
                f.unlink()
                removed = True
            except FileNotFoundError:
                pass
        return removed


def _inside(path: Path, folder: Path) -> bool:
    try:
        path.resolve().relative_to(folder.resolve())
        return True
    except ValueError:
        return False


def personalize_reenactor(reenactor, images, points, *, cfg=None, key_sources=None,
                          store: PersonalStore | None = None, labels=None, progress=None,
                          should_stop=None, warn=None):
    """Personalize a Reenactor on its sources and apply it → (Personalization | None, reused).

    images/points: the crops to train on (any square size). key_sources: (crops, points) at the
    model's size that identify the photos (default: images/points themselves). With a store, a
    personalization of these photos with the same tune mode and at least as many steps is
    reused instead of trained, and a new one is saved there. None when cancelled: the
    reenactor is left as it was.

    With a store: a damaged stored personalization is not used (a new fit replaces it); the
    folder is checked before fitting (PersonalizeError when nothing could be kept there); a
    fit that cannot be saved after all (a full disk) is still applied. `warn(message)` hears
    of the last two cases (default: a RuntimeWarning)."""
    from caingan.pipeline.personalize import PersonalizeConfig, personalize, source_fingerprints, sources_key

    cfg = cfg or PersonalizeConfig()
    kimg, kpts = key_sources if key_sources is not None else (images, points)
    key = sources_key(source_fingerprints(kimg, kpts), reenactor.model_id)
    found = None
    if store is not None:
        try:
            found = store.reusable(key, cfg)
        except CainGANError as e:
            st, js = store.files(key)
            _warn(warn, f"{e}. That stored personalization is not used; the new fit replaces it "
                        f"(if this message comes back, delete {st} and {js})")
        if found is None:
            store.check_writable()
    if found is not None:
        reenactor.set_personalization(found)
        return found, True
    applied = reenactor.personalization
    reenactor.set_personalization(None)
    try:
        p = personalize(reenactor.model, images, points, cfg, key=key, base_id=reenactor.model_id,
                        settings=reenactor.settings, progress=progress, should_stop=should_stop, device=reenactor.device)
    except BaseException:
        reenactor.set_personalization(applied)
        raise
    if p is None:
        reenactor.set_personalization(applied)
        return None, False
    if store is not None:
        try:
            store.save(p, labels)
        except (CainGANError, OSError) as e:
            why = e if isinstance(e, CainGANError) else (e.strerror or e)
            _warn(warn, f"the personalization is used now but could not be kept in {store.root} "
                        f"for next time: {why}")
    reenactor.set_personalization(p)
    return p, False


def _warn(warn, message: str) -> None:
    if warn is not None:
        warn(message)
    else:
        warnings.warn(message, RuntimeWarning, stacklevel=3)
