"""The cluster decoder (the authors' setting): a local Hugging Face causal LM with LoRA.

Visual tokens go through a 2-layer MLP into the LM's embedding space and sit between
``<Img>`` and ``</Img>`` in front of a prompt; the report follows. Only the LoRA adapters
and the projector train. Nothing downloads: ``model_path`` must be a local folder
(``local_files_only=True``). Same interface as ``ctrg.models.decoder.ReportDecoder``.
"""

from __future__ import annotations

import inspect
import logging
from dataclasses import asdict, dataclass, field
from typing import Any

import torch
from torch import nn

from ctrg.features.select import VisualTokens

log = logging.getLogger(__name__)

DEFAULT_PROMPT = " Generate a comprehensive and detailed diagnosis report for this chest CT volume."


@dataclass
class LLMConfig:
    """LM + LoRA settings (the ``stage2.llm`` config section)."""

    model_path: str = ""  # local folder of a Hugging Face causal LM (LLaMA-style)
    visual_dim: int = 128  # C, the width of the cached visual tokens
    projector_hidden: int = 768  # hidden width of the 2-layer visual MLP
    prompt: str = DEFAULT_PROMPT  # text after </Img>, before the report
    lora_r: int = 32  # LoRA rank
    lora_alpha: int = 16  # LoRA scaling numerator
    lora_dropout: float = 0.05  # LoRA dropout
    lora_target_modules: list[str] = field(
        default_factory=lambda: ["q_proj", "k_proj", "v_proj", "o_proj"]
    )  # every attention projection (the authors' pattern matched only one)
    max_length: int = 380  # most report tokens (BOS and EOS included)

    def to_dict(self) -> dict[str, Any]:
        """Plain dict (stored in checkpoints)."""
        return asdict(self)


class HFReportTokenizer:
    """A Hugging Face tokenizer behind the ReportTokenizer interface.

    Args:
        tokenizer: a ``transformers`` tokenizer with BOS and EOS tokens.
    """

    def __init__(self, tokenizer: Any) -> None:
        self.tokenizer = tokenizer
        if tokenizer.bos_token_id is None or tokenizer.eos_token_id is None:
            raise ValueError("the LM tokenizer must define bos and eos tokens")
        self.bos_id = int(tokenizer.bos_token_id)
        self.eos_id = int(tokenizer.eos_token_id)
        pad = tokenizer.pad_token_id
        self.pad_id = int(pad) if pad is not None else self.eos_id
        self.unk_id = tokenizer.unk_token_id

    @property
    def vocab_size(self) -> int:
        return len(self.tokenizer)

    def encode(self, text: str, max_length: int | None = None) -> list[int]:
        """Ids ``[BOS] tokens [EOS]`` (truncated to ``max_length``)."""
        ids = self.tokenizer.encode(text, add_special_tokens=False)
        if max_length is not None:
            ids = ids[: max_length - 2]
        return [self.bos_id, *ids, self.eos_id]

    def encode_plain(self, text: str) -> list[int]:
        """Ids of a prompt fragment without special tokens."""
        return list(self.tokenizer.encode(text, add_special_tokens=False))

    def decode(self, ids: list[int]) -> str:
        """Text up to the first EOS."""
        kept = []
        for token in ids:
            if int(token) == self.eos_id:
                break
            kept.append(int(token))
        return self.tokenizer.decode(kept, skip_special_tokens=True).strip()


def load_language_model(model_path: str, dtype: torch.dtype = torch.float32) -> Any:
    """Load a local causal LM (never downloads)."""
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(model_path, local_files_only=True, dtype=dtype)


class LLMReportDecoder(nn.Module):
    """Causal LM with LoRA adapters and an MLP visual prefix.

    Args:
        cfg: settings.
        language_model: a ``transformers`` causal LM (its weights are frozen here).
        prefix_ids: prompt ids before the visual tokens (e.g. ``<Img>``).
        suffix_ids: prompt ids after them (``</Img>`` + instruction).
    """

    def __init__(
        self, cfg: LLMConfig, language_model: Any, prefix_ids: list[int], suffix_ids: list[int]
    ) -> None:
        super().__init__()
        from peft import LoraConfig, get_peft_model

        self.cfg = cfg
        hidden = language_model.config.hidden_size
        for parameter in language_model.parameters():
            parameter.requires_grad_(False)
        lora = LoraConfig(
            r=cfg.lora_r,
            lora_alpha=cfg.lora_alpha,
            lora_dropout=cfg.lora_dropout,
            target_modules=list(cfg.lora_target_modules),
            task_type="CAUSAL_LM",
        )
        self.lm = get_peft_model(language_model, lora)
        self.projector = nn.Sequential(
            nn.Linear(cfg.visual_dim, cfg.projector_hidden),
            nn.GELU(),
            nn.Linear(cfg.projector_hidden, hidden),
        )
        self.register_buffer("prefix_ids", torch.tensor(prefix_ids, dtype=torch.long), False)
        self.register_buffer("suffix_ids", torch.tensor(suffix_ids, dtype=torch.long), False)

    @property
    def _cache_argument(self) -> str:
        """``cache`` (transformers >= 5.2x) or ``past_key_values`` (older releases)."""
        forward = self.lm.get_base_model().forward
        return "cache" if "cache" in inspect.signature(forward).parameters else "past_key_values"

    @property
    def max_positions(self) -> int:
        return self.cfg.max_length

    def _embed_ids(self, ids: torch.Tensor) -> torch.Tensor:
        return self.lm.get_input_embeddings()(ids)

    def encode_visual(self, visual: VisualTokens) -> torch.Tensor:
        """Prompt + projected visual tokens as input embeddings.

        Args:
            visual: tokens (B, T, C).

        Returns:
            (B, P, H) embeddings: ``prefix, MLP(visual), suffix``.
        """
        batch = visual.tokens.shape[0]
        projected = self.projector(visual.tokens)  # (B, T, H)
        prefix = self._embed_ids(self.prefix_ids).unsqueeze(0).expand(batch, -1, -1)
        suffix = self._embed_ids(self.suffix_ids).unsqueeze(0).expand(batch, -1, -1)
        return torch.cat([prefix, projected.to(prefix.dtype), suffix], dim=1)

    def token_logits(self, state: torch.Tensor, input_ids: torch.Tensor) -> torch.Tensor:
        """Teacher-forced logits (B, L, V) for the report positions only."""
        embeds = torch.cat([state, self._embed_ids(input_ids)], dim=1)
        logits = self.lm(inputs_embeds=embeds, use_cache=False).logits
        return logits[:, state.shape[1] :]

    def forward(
        self,
        visual_tokens: torch.Tensor,
        kind: torch.Tensor,
        structure: torch.Tensor,
        input_ids: torch.Tensor,
    ) -> torch.Tensor:
        """Teacher-forced logits (B, L, V) (plain tensors so that DDP can wrap it)."""
        state = self.encode_visual(VisualTokens(visual_tokens, kind, structure))
        return self.token_logits(state, input_ids)

    def init_cache(self, state: torch.Tensor) -> dict[str, Any]:
        """Empty cache (filled by the first :meth:`step`)."""
        return {"past": None, "seen": 0}

    def step(
        self, state: torch.Tensor, cache: dict[str, Any], input_ids: torch.Tensor
    ) -> tuple[torch.Tensor, dict[str, Any]]:
        """Next-token logits (B, V) after ``input_ids`` (B, L); runs only new positions."""
        new_ids = input_ids[:, cache["seen"] :]
        embeds = self._embed_ids(new_ids)
        if cache["past"] is None:
            embeds = torch.cat([state, embeds], dim=1)
        past_kwarg = {self._cache_argument: cache["past"]} if cache["past"] is not None else {}
        out = self.lm(inputs_embeds=embeds, use_cache=True, **past_kwarg)
        past = out["cache"] if "cache" in out else out["past_key_values"]
        return out.logits[:, -1], {"past": past, "seen": input_ids.shape[1]}

    @staticmethod
    def reorder_cache(cache: dict[str, Any], index: torch.Tensor) -> dict[str, Any]:
        """Select batch rows ``index`` of the LM's key/value cache."""
        past = cache["past"]
        if past is not None:
            past.reorder_cache(index)
        return {"past": past, "seen": cache["seen"]}

    def _trainable_names(self) -> set[str]:
        return {name for name, p in self.named_parameters() if p.requires_grad}

    def state_dict(self, *args: Any, **kwargs: Any) -> dict[str, Any]:  # type: ignore[override]
        """Only what trains (LoRA + projector): what checkpoints store.

        The frozen LM weights come from ``model_path``; keeping them out of the state keeps
        a 7B model's checkpoints at adapter size.
        """
        full = super().state_dict(*args, **kwargs)
        prefix = kwargs.get("prefix", args[1] if len(args) > 1 else "")
        keep = {prefix + name for name in self._trainable_names()}
        return {k: v for k, v in full.items() if k in keep}

    def load_state_dict(self, state_dict: Any, strict: bool = True, assign: bool = False) -> Any:
        """Load :meth:`state_dict` output; with ``strict`` every trainable tensor must be there."""
        names = self._trainable_names()
        missing = sorted(names - set(state_dict))
        unexpected = sorted(set(state_dict) - names)
        if strict and (missing or unexpected):
            raise ValueError(
                f"LLM decoder state mismatch: missing {missing[:5]}, unexpected {unexpected[:5]}"
            )
        return super().load_state_dict(state_dict, strict=False, assign=assign)


def build_llm_decoder(
    cfg: LLMConfig, language_model: Any, tokenizer: HFReportTokenizer
) -> LLMReportDecoder:
    """Build the decoder with the ``<Img> ... </Img>`` prompt encoded by ``tokenizer``."""
    prefix = tokenizer.encode_plain("<Img>")
    suffix = tokenizer.encode_plain("</Img>" + cfg.prompt)
    return LLMReportDecoder(cfg, language_model, prefix, suffix)


DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def build_from_path(
    cfg: LLMConfig, dtype: str = "float32"
) -> tuple[LLMReportDecoder, HFReportTokenizer]:
    """Load the local LM and its tokenizer from ``cfg.model_path`` and wrap them.

    Raises:
        ValueError: when ``model_path`` is empty or not a folder.
    """
    from pathlib import Path

    from transformers import AutoTokenizer

    if not cfg.model_path or not Path(cfg.model_path).is_dir():
        raise ValueError(
            f"stage2.llm.model_path {cfg.model_path!r} is not a local folder (nothing is "
            "downloaded; point it at a Hugging Face causal LM on disk)"
        )
    tokenizer = HFReportTokenizer(
        AutoTokenizer.from_pretrained(cfg.model_path, local_files_only=True)
    )
    language_model = load_language_model(cfg.model_path, DTYPES[dtype])
    return build_llm_decoder(cfg, language_model, tokenizer), tokenizer
