"""What the model measurements of ``ctrg bench speed`` share: ``Setup`` (the resolved stage
sections, repeats, device and sizes), the random-input constants, and a stage-1 model built
in its steady state (full negative queue) after torch's one-time costs are paid.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from ctrg.anatomy import CHEST_STRUCTURES
from ctrg.train.stage1 import build_model

CONFIG_STAGES: tuple[str, ...] = ("stage1", "stage2", "features", "generate")
TEXT_DIM = 384  # frozen text encoder width (MiniLM)
NUM_STRUCTURES = len(CHEST_STRUCTURES)  # S
PAD_ID, BOS_ID, EOS_ID = 0, 2, 3  # ctrg.models.tokenizer: SPECIAL_TOKENS take ids 0-3


@dataclass
class Setup:
    """What the model measurements share: the resolved stage sections, repeats and device."""

    stage1: dict[str, Any]
    stage2: dict[str, Any]
    features: dict[str, Any]
    generate: dict[str, Any]
    repeats: int
    device: torch.device
    batch_size: int  # stage-1 volumes per step
    visual_dim: int  # C of the tokens handed to stage 2 (stage1.model.query_dim)
    top_k: int  # patches kept per structure (features.top_k)
    train_steps: int = 5  # timed training steps of stage 1, stage 2 and the LLM (median)
    amp_baseline: bool = False  # also time stage 1 and 2 without autocast (same process)

    @classmethod
    def from_sections(
        cls, sections: dict[str, dict[str, Any]], device: torch.device, **options: Any
    ) -> Setup:
        """From the resolved ``CONFIG_STAGES`` sections; ``batch_size`` None = stage 1's."""
        stage1 = sections["stage1"]
        batch_size = options.pop("batch_size", None) or stage1["loop"]["batch_size"]
        return cls(
            **{stage: sections[stage] for stage in CONFIG_STAGES},
            device=device,
            batch_size=batch_size,
            visual_dim=stage1["model"]["query_dim"],
            top_k=sections["features"]["top_k"],
            **options,
        )


def build_stage1(section: dict[str, Any], device: torch.device) -> Any:
    """The stage-1 model of ``section`` on ``device``, its negative queue filled (random)."""
    model = build_model(section, text_dim=TEXT_DIM, num_structures=NUM_STRUCTURES).to(device)
    if model.queue is not None:  # steady state: every step sees the full queue
        queries, size = model.observer.config.num_queries, model.queue.size
        ids = torch.arange(queries, device=device).repeat_interleave(size)
        model.queue.update(torch.randn(len(ids), TEXT_DIM, device=device), ids, gather=False)
    return model


def prime_torch(section: dict[str, Any], device: torch.device) -> None:
    """A batch-1 forward/backward of a throwaway model and an AdamW step on a scalar.

    Torch's lazy imports and one-time buffers (about 100 MB of RSS on CPU) then fall before
    the memory window, while the model's own weights and optimizer state stay inside it.
    """
    model = build_stage1(section, device).train()
    shape = section["model"]["volume_shape"]
    inputs = (torch.randn(1, 1, *shape), torch.randn(1, NUM_STRUCTURES, TEXT_DIM))
    loss, _ = model(*(x.to(device) for x in inputs), torch.randn(1, TEXT_DIM, device=device))
    loss.backward()
    scalar = torch.nn.Parameter(torch.zeros(1, device=device))
    scalar.grad = torch.ones_like(scalar)
    torch.optim.AdamW([scalar]).step()
