"""Map CT-CLIP's visual (CT-ViT encoder) weights onto :class:`ctrg.models.vision.VisionEncoder`.

CT-CLIP checkpoints hold the image encoder under ``visual_transformer.`` (a bare CTViT
state dict has no prefix). Encoder names (i = layer index) and ours:

    to_patch_emb.1.{weight,bias}     LayerNorm(patch)  -> patch_embed.norm_in
    to_patch_emb.2.{weight,bias}     Linear(patch, dim) -> patch_embed.proj
    to_patch_emb.3.{weight,bias}     LayerNorm(dim)    -> patch_embed.norm_out
    spatial_rel_pos_bias.net.0.0 / net.1.0 / net.2     -> spatial_bias.layers.0 / 1 / 2
    enc_{spatial,temporal}_transformer.layers.i.0.dsconv   -> {spatial,temporal}.layers.i.peg.conv
    ....layers.i.1.norm.{gamma,beta}                  -> ....layers.i.attn.norm.{weight,bias}
    ....layers.i.1.{to_q,to_kv,to_out}.weight, q_scale, k_scale -> ....layers.i.attn.<same>
    ....layers.i.3.0.{weight,bias} / 3.1.weight / 3.4.weight -> ....layers.i.ff.norm / up / down
    ....norm_out.{gamma,beta}                         -> ....norm_out.{weight,bias}

Dropped: ``....layers.i.1.context_norm.*`` (unused in self-attention), empty
``....layers.i.1.null_kv`` (shape (heads, 0, dim_head); a non-empty one is an error), the
decoder, codebook, discriminator and CT-CLIP's flattened ``to_visual_latent`` projection.
"""

from __future__ import annotations

import logging
import re
from pathlib import Path

import torch
from torch import nn

log = logging.getLogger(__name__)

_STATIC = {
    "to_patch_emb.1.": "patch_embed.norm_in.",
    "to_patch_emb.2.": "patch_embed.proj.",
    "to_patch_emb.3.": "patch_embed.norm_out.",
    "spatial_rel_pos_bias.net.0.0.": "spatial_bias.layers.0.",
    "spatial_rel_pos_bias.net.1.0.": "spatial_bias.layers.1.",
    "spatial_rel_pos_bias.net.2.": "spatial_bias.layers.2.",
}
_LAYER = re.compile(r"^enc_(spatial|temporal)_transformer\.layers\.(\d+)\.(\d)\.(.+)$")
_NORM_OUT = re.compile(r"^enc_(spatial|temporal)_transformer\.norm_out\.(gamma|beta)$")
_ATTN = {
    "norm.gamma": "attn.norm.weight",
    "norm.beta": "attn.norm.bias",
    "to_q.weight": "attn.to_q.weight",
    "to_kv.weight": "attn.to_kv.weight",
    "to_out.weight": "attn.to_out.weight",
    "q_scale": "attn.q_scale",
    "k_scale": "attn.k_scale",
}
_FF = {
    "0.weight": "ff.norm.weight",
    "0.bias": "ff.norm.bias",
    "1.weight": "ff.up.weight",
    "4.weight": "ff.down.weight",
}
_GAMMA = {"gamma": "weight", "beta": "bias"}


def _map_name(name: str) -> str | None:
    """Our parameter name for a CT-ViT encoder name, or None when it is not mapped."""
    for old, new in _STATIC.items():
        if name.startswith(old):
            return new + name[len(old) :]
    if match := _NORM_OUT.match(name):
        return f"{match[1]}.norm_out.{_GAMMA[match[2]]}"
    match = _LAYER.match(name)
    if not match:
        return None
    stack, layer, part, rest = match.groups()
    prefix = f"{stack}.layers.{layer}."
    if part == "0" and rest.startswith("dsconv."):
        return prefix + "peg.conv." + rest[len("dsconv.") :]
    if part == "1":
        return prefix + _ATTN[rest] if rest in _ATTN else None
    if part == "3":
        return prefix + _FF[rest] if rest in _FF else None
    return None


def map_ctclip_visual(state: dict[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], list[str]]:
    """Translate a CT-CLIP / CTViT state dict into VisionEncoder names.

    Returns:
        (mapped state dict, names that were dropped).

    Raises:
        ValueError: when a layer has non-empty null key/values (not supported here).
    """
    prefix = "visual_transformer."
    if any(k.startswith(prefix) for k in state):
        state = {k[len(prefix) :]: v for k, v in state.items() if k.startswith(prefix)}
    mapped, dropped = {}, []
    for name, value in state.items():
        if name.endswith(".null_kv") and value.numel() > 0:
            raise ValueError(f"{name}: {tuple(value.shape)} null key/values are not supported")
        new = _map_name(name)
        if new is None:
            dropped.append(name)
        else:
            mapped[new] = value
    return mapped, dropped


def load_ctclip_visual(encoder: nn.Module, path: str | Path) -> dict[str, int]:
    """Load a CT-CLIP checkpoint's visual weights into ``encoder`` (shapes must match).

    Raises:
        ValueError: naming the file on a shape mismatch or when encoder weights are missing.
    """
    state = torch.load(path, map_location="cpu", weights_only=True)
    if isinstance(state, dict) and "model" in state and isinstance(state["model"], dict):
        state = state["model"]
    mapped, dropped = map_ctclip_visual(state)
    own = encoder.state_dict()
    wrong = [
        f"{k}: {tuple(v.shape)} vs ours {tuple(own[k].shape)}"
        for k, v in mapped.items()
        if k in own and own[k].shape != v.shape
    ]
    unknown = sorted(set(mapped) - set(own))
    missing = sorted(set(own) - set(mapped))
    if wrong or unknown or missing:
        raise ValueError(
            f"{path}: CT-CLIP weights do not fit the vision encoder: "
            f"shape {wrong[:5]}, unknown {unknown[:5]}, missing {missing[:5]}"
        )
    encoder.load_state_dict(mapped)
    log.info(
        "loaded %d CT-CLIP visual tensors from %s (%d dropped)", len(mapped), path, len(dropped)
    )
    return {"loaded": len(mapped), "dropped": len(dropped)}
