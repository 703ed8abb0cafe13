"""The warp-guided model's landmark field: where each target pixel reads its source.

One sampling grid per (target, source) pair, at the network's side S, in grid_sample's
normalised coordinates (so the same grid, resized, warps the source at any resolution):

1. a thin-plate spline through the 68 point pairs and fixed anchors on the crop border
   (caingan.nn.tps): smooth, it bends the hair and background with the face;
2. over the face (the hull of the 68 points grown by a quarter of its width,
   caingan.nn.part_mask.affine_window) the piecewise-affine field (caingan.nn.affine_warp),
   which moves each part only with its own landmarks (the spline's global bending costs
   identity); all sources of a frame share the target's rasterised triangulation;
3. where the target opens the mouth wider than the source (`mouth_gap` "bands" / "cavity"), the
   piecewise-affine field with a strip under each inner lip kept at the source's height
   (caingan.nn.mouth), and where it closes the eyes more (`eyelids`), the field with the lids kept
   apart (caingan.nn.eyelids), each in its own window and faded in by how much it applies.
"""

from __future__ import annotations

import numpy as np
import torch

from caingan.nn import eyelids, mouth, tps
from caingan.nn.affine_warp import TargetMesh, mesh_grid, target_mesh, warp_grid
from caingan.nn.part_mask import affine_window

LATTICE = 32   # the spline is solved on a LATTICE² grid and resized to the network's side


def landmark_grids(source_points: torch.Tensor, target_points: torch.Tensor, size: int, net_size: int,
                   bands: bool, lids: bool, use: np.ndarray | None = None) -> torch.Tensor:
    """(B,K,68,2) source points and (B,68,2) target points, both in pixels of size² crops →
    grids (B,K,S,S,2) with S = net_size. `bands`: the mouth's bands where the target opens the
    mouth wider than a source; `lids`: the lids kept apart where it closes the eyes more. `use`
    (B,K) bool: only those pairs' grids are needed (the others hold the spline's)."""
    b, k = source_points.shape[:2]
    s = net_size
    sp = source_points.detach().cpu().double().numpy()
    tp = target_points.detach().cpu().double().numpy()
    use = np.ones((b, k), bool) if use is None else np.asarray(use, bool)
    # Per pair, how far the target opens the mouth beyond that source and closes the eyes beyond
    # it (0: not at all); where it does, that part's own piecewise-affine field takes over.
    mouth_amt = np.array([[mouth.band_amount(sp[i, j], tp[i]) if bands and use[i, j] else 0.0
                           for j in range(k)] for i in range(b)]).reshape(b, k)
    lid_amt = np.array([[eyelids.close_amount(sp[i, j], tp[i]) if lids and use[i, j] else 0.0
                         for j in range(k)] for i in range(b)]).reshape(b, k)
    face_amt = use.astype(np.float64)
    extras = (mouth_amt > 0) | (lid_amt > 0)
    strip = eyelids.MIN_OPEN * size / s
    dst = [eyelids.apart(tp[i], strip) if lids else tp[i] for i in range(b)]
    meshes: dict[tuple, TargetMesh] = {}

    def affine_grid(i: int, j: int, window: tuple[int, int, int, int], shared: bool) -> np.ndarray:
        """Source j's piecewise-affine grid onto target i, cut to `window`. `shared`, or without
        extra points (no bands or lids), it is read off target i's rasterised mesh, which all the
        frame's sources share; with them the source gets its own."""
        if extras[i, j] and not shared:
            src, dst_i = mouth.with_bands(sp[i, j], dst[i]) if mouth_amt[i, j] > 0 else (sp[i, j], dst[i])
            if lid_amt[i, j] > 0:
                src, dst_i = eyelids.with_lids(src, dst_i, strip)
            return warp_grid(src, dst_i, size, s, window=window)
        if (i, window) not in meshes:
            meshes[i, window] = target_mesh(dst[i], size, s, window)
        return mesh_grid(meshes[i, window], sp[i, j])

    g = tps.tps_grids(tps.normalise_points(source_points.float(), size),
                      tps.normalise_points(target_points.float(), size), LATTICE, s)
    parts = (("face", face_amt, lambda p, n: affine_window("face", p, n)),
             ("mouth", mouth_amt, mouth.mouth_window),
             ("eyes", lid_amt, eyelids.eye_window))
    windows: dict[tuple[str, int], tuple] = {}
    for i, j in zip(*np.nonzero(use)):
        for part, amount, window in parts:
            if amount[i, j] <= 0:
                continue
            if (part, i) not in windows:
                windows[part, i] = window(tp[i] * (s / size), s)
            w, box = windows[part, i]
            if w is None:
                continue
            # Only in the window the part's weight covers, faded in by the amount. The face takes
            # the shared mesh; the mouth's bands and the lids come on top in their own windows.
            y0, y1, x0, x1 = box
            ga = torch.from_numpy(affine_grid(i, j, box, shared=part == "face"))
            w = torch.from_numpy(w * amount[i, j]).to(g.device, g.dtype)[..., None]
            g[i, j, y0:y1, x0:x1] = w * ga.to(g.device, g.dtype) + (1 - w) * g[i, j, y0:y1, x0:x1]
    return g
