"""Does a structure query look at its structure? Top-k attended patches vs the label map.

For a case with a structure label map (0 = background, k = structure index + 1, on the
volume grid), each patch gets the fraction of its voxels that belong to each label. For
query s, the top-k patches of the last co-attention layer's attention (max over heads)
count as hits when they overlap structure s (``any``: at least one voxel; ``majority``: at
least half the voxels). Chance is the same fraction over all patches of the case.
"""

from __future__ import annotations

import numpy as np
import torch


def patch_label_fractions(
    label_map: np.ndarray, patch_shape: tuple[int, int, int], num_labels: int
) -> np.ndarray:
    """(D, H, W) integer labels -> (N, num_labels) voxel fraction of each label per patch.

    Patches are ordered (t, h, w) like the vision encoder's tokens.
    """
    d, h, w = label_map.shape
    pt, ph, pw = patch_shape
    if d % pt or h % ph or w % pw:
        raise ValueError(f"label map {label_map.shape} not divisible by patch {patch_shape}")
    blocks = label_map.reshape(d // pt, pt, h // ph, ph, w // pw, pw)
    blocks = blocks.transpose(0, 2, 4, 1, 3, 5).reshape(-1, pt * ph * pw).astype(np.int64)
    if blocks.max(initial=0) >= num_labels:
        raise ValueError(f"label {blocks.max()} >= num_labels {num_labels}")
    counts = np.stack([np.bincount(row, minlength=num_labels) for row in blocks])
    return counts / float(pt * ph * pw)


def attention_hits(
    attention: torch.Tensor, fractions: np.ndarray, top_k: int = 9
) -> dict[str, np.ndarray]:
    """Hit rates of one case.

    Args:
        attention: (heads, S, N) or (S, N) query-to-patch attention.
        fractions: (N, S + 1) from :func:`patch_label_fractions` (column s + 1 = structure s).
        top_k: patches per query.

    Returns:
        ``hit_any``, ``chance_any``, ``hit_majority``, ``chance_majority``: arrays (S,), NaN
        where structure s is absent from the case.
    """
    scores = attention.float().amax(dim=0) if attention.ndim == 3 else attention.float()
    top = scores.topk(min(top_k, scores.shape[-1]), dim=-1).indices.cpu().numpy()  # (S, k)
    s = scores.shape[0]
    result = {
        name: np.full(s, np.nan)
        for name in ("hit_any", "chance_any", "hit_majority", "chance_majority")
    }
    for query in range(s):
        frac = fractions[:, query + 1]
        if frac.max() == 0:
            continue
        result["hit_any"][query] = (frac[top[query]] > 0).mean()
        result["chance_any"][query] = (frac > 0).mean()
        result["hit_majority"][query] = (frac[top[query]] >= 0.5).mean()
        result["chance_majority"][query] = (frac >= 0.5).mean()
    return result


def summarise_hits(per_case: list[dict[str, np.ndarray]], names: list[str]) -> dict[str, dict]:
    """Mean over cases (ignoring absent structures) per structure name."""
    summary: dict[str, dict] = {}
    for i, name in enumerate(names):
        values = (
            {k: [case[k][i] for case in per_case if not np.isnan(case[k][i])] for k in per_case[0]}
            if per_case
            else {}
        )
        if not values or not values["hit_any"]:
            continue
        summary[name] = {k: float(np.mean(v)) for k, v in values.items()}
        summary[name]["cases"] = len(values["hit_any"])
    return summary
