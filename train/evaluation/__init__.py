"""Evaluation of generators on held-out faces (imports caingan and train's data side, never app).

`run` is `caingan-eval`: `protocol` (which frames, which sources) → `methods` (checkpoints and
the weightless `warp_baselines` behind one interface) → `scorer` (`metrics`, `fid`) → `report`
(RESULTS.md / RESULTS.json, figures). Studies built on the same parts: `paired` (two methods with
bootstrap intervals over clips), `headroom` (what a perfect region would gain over the warp),
`stills` (personalization on photo collections), `ablations` (every method under one training
budget), `edit_grid` (edits beside the warp, a figure).
"""
