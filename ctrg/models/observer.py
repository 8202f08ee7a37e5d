"""StructureObserver: 3D ViT + structure queries + projections into the shared space.

Used by stage 1 (training), feature extraction and inference::

    observer = load_stage1("results/default/stage1/model.pt", device)
    out = observer.encode_volume(volume)       # volume (B, 1, D, H, W) in [-1, 1]
    out.observation_tokens   # (B, S, C)  C = query_dim, after the co-attention blocks
                             #            (+ the spatial readout when enabled)
    out.patch_tokens         # (B, N, C)  patch tokens after the co-attention blocks
    out.attention            # (B, heads, S, N) last block's query-to-patch attention
    out.observation_embeddings  # (B, S, E) L2-normalised (linear C->E, no bias)
    out.finding_logits       # (B, L) finding-head logits, or None without a head

With ``queries = "global"`` (ablation) S = 1. The defaults, here and in the workflow
(``stage1.schema.yaml``), are the paper's observer (co-attention only, no centring);
``spatial_readout``, ``image_centering`` and ``text_centering`` are measured options
(docs/stage1.md).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ctrg.anatomy import CHEST_STRUCTURES
from ctrg.models.centering import EmbeddingCentering
from ctrg.models.finding_head import FindingHead, FindingHeadConfig
from ctrg.models.queries import StructureQueries
from ctrg.models.readout import SpatialReadout
from ctrg.models.vision import VisionEncoder


@dataclass
class ObserverConfig:
    """Model sizes (stage1.model section). Defaults: the CPU-sized model."""

    volume_shape: tuple[int, int, int] = (48, 96, 96)  # (D, H, W)
    patch_shape: tuple[int, int, int] = (8, 16, 16)  # -> 6 x 6 x 6 = 216 tokens
    channels: int = 1
    vision_dim: int = 128  # CT-ViT width (paper 512)
    vision_heads: int = 4
    vision_dim_head: int = 32
    spatial_depth: int = 2  # paper 4
    temporal_depth: int = 2  # paper 4
    ff_mult: float = 4.0
    peg_causal: bool = True
    patch_norm: bool = False  # True = CT-CLIP's LayerNorm over each raw patch (drops its mean HU)
    stem: str = "linear"  # linear (CT-CLIP patch projection) | conv (convolutional stem)
    query_dim: int = 128  # width of queries and co-attention (paper 768)
    query_heads: int = 4
    coattention_layers: int = 2
    queries: str = "structure"  # structure (S queries) | global (one query)
    spatial_readout: bool = False  # add a position-aware linear readout of all patch tokens
    spatial_readout_rank: int = 4  # width each patch token is reduced to in that readout
    num_structures: int = len(CHEST_STRUCTURES)
    embed_dim: int = 256  # shared image-text space (paper 512)
    text_dim: int = 384  # frozen text encoder width (MiniLM 384)
    text_centering: bool = False  # subtract the per-query mean frozen text feature (train split)
    image_centering: bool = False  # subtract the per-query mean observation projection
    image_center_momentum: float = 0.1  # running-mean update rate of image_centering
    finding_structures: tuple[int, ...] = ()  # query read by each finding label; () = no head

    @property
    def num_queries(self) -> int:
        return 1 if self.queries == "global" else self.num_structures

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> ObserverConfig:
        """Build from a dict (unknown keys ignored; lists become tuples)."""
        known = {f.name for f in fields(cls)}
        kwargs = {
            k: tuple(v) if isinstance(v, list) else v for k, v in values.items() if k in known
        }
        config = cls(**kwargs)
        if config.queries not in ("structure", "global"):
            raise ValueError(f"queries must be structure or global, got {config.queries!r}")
        return config


@dataclass
class VisualOutput:
    """Outputs of :meth:`StructureObserver.encode_volume` (shapes in the module doc)."""

    observation_tokens: torch.Tensor
    patch_tokens: torch.Tensor
    attention: torch.Tensor
    observation_embeddings: torch.Tensor
    finding_logits: torch.Tensor | None = None  # (B, L) when the observer has a finding head


class StructureObserver(nn.Module):
    """The stage-1 model (see module doc)."""

    def __init__(self, config: ObserverConfig) -> None:
        super().__init__()
        self.config = config
        self.vision = VisionEncoder(
            config.volume_shape,
            config.patch_shape,
            config.vision_dim,
            config.vision_heads,
            config.vision_dim_head,
            config.spatial_depth,
            config.temporal_depth,
            config.ff_mult,
            config.channels,
            config.peg_causal,
            config.patch_norm,
            config.stem,
        )
        self.to_query_dim = nn.Linear(config.vision_dim, config.query_dim)
        self.queries = StructureQueries(
            config.num_queries, config.query_dim, config.query_heads, config.coattention_layers
        )
        self.readout = (
            SpatialReadout(
                config.num_queries,
                self.vision.num_patches,
                config.query_dim,
                config.spatial_readout_rank,
            )
            if config.spatial_readout
            else None
        )
        self.observation_proj = nn.Linear(config.query_dim, config.embed_dim, bias=False)
        self.text_proj = nn.Linear(config.text_dim, config.embed_dim, bias=False)
        self.image_center = (
            EmbeddingCentering(config.num_queries, config.embed_dim, config.image_center_momentum)
            if config.image_centering
            else None
        )
        self.finding_head = (
            FindingHead(FindingHeadConfig(config.finding_structures), config.query_dim)
            if config.finding_structures
            else None
        )
        # per-query mean unit text feature (num_queries, text_dim); None = no centring
        center = torch.zeros(config.num_queries, config.text_dim) if config.text_centering else None
        self.register_buffer("text_center", center)

    @property
    def patch_grid(self) -> tuple[int, int, int]:
        """(t, h, w) patch grid; token n = (ti * h + hi) * w + wi."""
        return self.vision.grid  # type: ignore[return-value]

    def encode_volume(self, volume: torch.Tensor) -> VisualOutput:
        """volume (B, C, D, H, W) -> :class:`VisualOutput`."""
        expected = (self.config.channels, *self.config.volume_shape)
        if tuple(volume.shape[1:]) != expected:
            raise ValueError(f"volume shape {tuple(volume.shape)} != (B, {expected})")
        patches = self.to_query_dim(self.vision(volume))  # (B, N, C)
        observation_tokens, patch_tokens, attention = self.queries(patches)
        if self.readout is not None:
            observation_tokens = observation_tokens + self.readout(patches)  # (B, S, C)
        projected = self.observation_proj(observation_tokens).float()  # (B, S, E)
        if self.image_center is not None:
            projected = self.image_center(projected)
        embeddings = F.normalize(projected, dim=-1)
        findings = None if self.finding_head is None else self.finding_head(observation_tokens)
        return VisualOutput(observation_tokens, patch_tokens, attention, embeddings, findings)

    def set_text_center(self, features: torch.Tensor) -> None:
        """Store the mean unit-normalised training text feature per query, if enabled.

        Frozen sentence embeddings share a large common direction (mean pairwise cosine
        0.85-0.91 within a structure on the phantom); centring removes it so the projected
        texts of different cases are not near-identical at the start of training.

        Args:
            features: (N, S, text_dim) frozen features of the training cases.
        """
        if self.text_center is not None:
            unit = F.normalize(features.float(), dim=-1)
            self.text_center.copy_(unit.mean(dim=0).to(self.text_center))

    def encode_text(
        self, text_features: torch.Tensor, structures: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Frozen-encoder features -> L2-normalised, centred, projected, L2-normalised.

        Args:
            text_features: (..., S, text_dim) in query order, or (K, text_dim) with
                ``structures`` (K,) giving each row's query index (queue keys).

        Returns:
            (..., S, embed_dim) or (K, embed_dim), L2-normalised.
        """
        features = text_features.to(self.text_proj.weight.dtype)
        if self.text_center is not None:
            center = self.text_center if structures is None else self.text_center[structures]
            features = F.normalize(features.float(), dim=-1) - center
        return F.normalize(self.text_proj(features.to(self.text_proj.weight.dtype)).float(), dim=-1)


def load_stage1(path: str | Path, device: torch.device | str = "cpu") -> StructureObserver:
    """Load ``model.pt`` written by ``ctrg stage1`` (weights_only) in eval mode.

    Raises:
        ValueError: naming the file when it is not a stage-1 checkpoint.
    """
    state = torch.load(path, map_location=device, weights_only=True)
    if not isinstance(state, dict) or "model" not in state or "observer" not in state:
        raise ValueError(f"{path}: not a stage-1 checkpoint (needs 'model' and 'observer' keys)")
    observer = StructureObserver(ObserverConfig.from_dict(state["observer"]))
    observer.load_state_dict(state["model"])
    return observer.to(device).eval()


def observer_config_dict(config: ObserverConfig) -> dict[str, Any]:
    """JSON/weights_only-friendly dict of a config (tuples become lists)."""
    return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(config).items()}
