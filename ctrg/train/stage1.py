"""``ctrg stage1``: structure-observation contrastive training.

Reads model-ready volumes (manifest), the structure texts (only to check that the text
cache was built from them) and the cached frozen text embeddings; trains the
StructureObserver with the structure-wise contrastive loss and the negative queue; writes
``model.pt`` (``{"model", "config", "observer", "step", "provenance"}``), ``summary.json``
(validation curve, final retrieval, throughput, peak memory, attention concentration),
``train_log.jsonl``, ``resolved_config.json`` and resumable checkpoints under ``work/``.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ctrg.anatomy import CHEST_STRUCTURES, CTRATE_LABELS
from ctrg.data.dataset import Augment, VolumeTextDataset, collate_cases
from ctrg.losses import LossConfig, structure_contrastive_loss
from ctrg.models.finding_head import FindingLoss, label_structures, positive_weights
from ctrg.models.observer import ObserverConfig, StructureObserver, observer_config_dict
from ctrg.models.text_cache import load_text_cache, read_structure_texts
from ctrg.queue import StructureQueue, gather_across_ranks
from ctrg.runtime import (
    atomic_path,
    provenance,
    setup_logging,
    write_stage_summary,
)
from ctrg.train.loop import LoopConfig, Trainer, unwrap
from ctrg.train.loop_config import begin_stage
from ctrg.train.retrieval import attention_concentration
from ctrg.train.stage1_validation import attach_finding_labels, make_evaluate

log = logging.getLogger(__name__)


class Stage1Model(nn.Module):
    """Observer + loss + optional negative queue; ``forward`` returns (loss, metrics).

    Args:
        observer: the model being trained. loss: loss settings.
        queue_kind: diversity | fifo | none. queue_size: slots per structure.
        skip_batch_texts: leave out queue entries identical to a text of the current batch
            (with fewer training cases than slots the queue holds every case's own text,
            which would otherwise be a negative for its own image).
        finding_weight: weight of the finding-head loss (0 = the method alone; the observer
            must have a finding head when > 0).
    """

    def __init__(
        self,
        observer: StructureObserver,
        loss: LossConfig,
        queue_kind: str = "diversity",
        queue_size: int = 256,
        skip_batch_texts: bool = False,
        finding_weight: float = 0.0,
    ) -> None:
        super().__init__()
        self.observer, self.loss_config = observer, loss
        self.skip_batch_texts = skip_batch_texts
        self.finding_weight = finding_weight
        self.finding_loss: FindingLoss | None = None  # set by set_finding_labels
        cfg = observer.config
        self.queue = None
        if queue_kind != "none":
            self.queue = StructureQueue(
                cfg.num_queries, queue_size, cfg.text_dim, queue_kind, loss.tau
            )

    def text_features(
        self, text_features: torch.Tensor, report_features: torch.Tensor
    ) -> torch.Tensor:
        """Frozen features per query: (B, S, H), or (B, 1, H) report features (global)."""
        if self.observer.config.queries == "global":
            return report_features[:, None, :]
        return text_features

    def text_targets(
        self, text_features: torch.Tensor, report_features: torch.Tensor
    ) -> torch.Tensor:
        """L2-normalised projected text embeddings (B, S, E) matching the queries."""
        return self.observer.encode_text(self.text_features(text_features, report_features))

    def set_finding_labels(self, train_labels: torch.Tensor, cap: float) -> None:
        """Build the finding loss, positives weighted by the training labels (N, L)."""
        self.finding_loss = FindingLoss(positive_weights(train_labels, cap))

    def forward(
        self,
        volume: torch.Tensor,
        text_features: torch.Tensor,
        report_features: torch.Tensor,
        labels: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """volume (B, 1, D, H, W), text_features (B, S, H), report_features (B, H),
        labels (B, L) report-derived findings in {0, 1, NaN} (used with a finding head)."""
        visual = self.observer.encode_volume(volume)
        image = visual.observation_embeddings  # (B, S, E)
        features = self.text_features(text_features, report_features).float()
        all_features, offset = gather_across_ranks(features)  # (B_all, S, H)
        texts = self.observer.encode_text(all_features)
        queue_keys = queue_structures = None
        if self.queue is not None:
            raw, queue_structures = self.queue.keys()
            if self.skip_batch_texts and len(raw):
                keep = ~batch_duplicates(raw, queue_structures, all_features)
                raw, queue_structures = raw[keep], queue_structures[keep]
            queue_keys = self.observer.encode_text(raw, queue_structures) if len(raw) else None
        loss, metrics = structure_contrastive_loss(
            image, texts, self.loss_config, queue_keys, queue_structures, offset
        )
        if self.finding_loss is not None and labels is not None and self.finding_weight > 0:
            finding = self.finding_loss(visual.finding_logits, labels.to(volume.device))
            metrics["contrastive_loss"] = loss.detach()
            metrics["finding_loss"] = finding.detach()
            loss = loss + self.finding_weight * finding
        if self.queue is not None and self.training:
            s = all_features.shape[1]
            ids = torch.arange(s, device=volume.device).repeat(all_features.shape[0])
            self.queue.update(all_features.reshape(-1, all_features.shape[-1]), ids, gather=False)
            metrics["queue_filled"] = self.queue.filled.float().mean()
        return loss, metrics


def batch_duplicates(
    queue_features: torch.Tensor, queue_structures: torch.Tensor, batch: torch.Tensor
) -> torch.Tensor:
    """Which queue entries equal (cosine > 1 - 1e-5) a batch text of their structure.

    Args:
        queue_features: (Q, H) frozen features. queue_structures: (Q,) structure ids.
        batch: (B, S, H) frozen features of the batch.

    Returns:
        (Q,) bool.
    """
    unit = F.normalize(batch.float(), dim=-1)[:, queue_structures]  # (B, Q, H)
    similarity = (unit * F.normalize(queue_features.float(), dim=-1)[None]).sum(-1)
    return (similarity > 1 - 1e-5).any(dim=0)


def build_model(section: dict[str, Any], text_dim: int, num_structures: int) -> Stage1Model:
    """Stage1Model from the stage1 section (optionally CT-CLIP-initialised)."""
    weight = section.get("findings", {}).get("weight", 0.0)
    queries = 1 if section["model"]["queries"] == "global" else num_structures
    heads = label_structures(CTRATE_LABELS, CHEST_STRUCTURES, queries) if weight > 0 else ()
    config = ObserverConfig.from_dict(
        {
            **section["model"],
            "text_dim": text_dim,
            "num_structures": num_structures,
            "finding_structures": heads,
        }
    )
    observer = StructureObserver(config)
    if section["model"]["init_checkpoint"]:
        from ctrg.models.ctclip_mapping import load_ctclip_visual

        load_ctclip_visual(observer.vision, section["model"]["init_checkpoint"])
    loss = LossConfig(**section["loss"])
    queue = section["queue"]
    return Stage1Model(
        observer, loss, queue["kind"], queue["size"], queue.get("skip_batch_texts", False), weight
    )


def step_fn(model: nn.Module, batch: dict[str, Any]) -> tuple[torch.Tensor, dict[str, Any]]:
    """One micro-batch of the contrastive objective (+ the finding loss when enabled)."""
    return model(
        batch["volume"], batch["text_features"], batch["report_features"], batch.get("labels")
    )


def _datasets(
    args: argparse.Namespace, section: dict, cache: Any, seed: int
) -> tuple[VolumeTextDataset, VolumeTextDataset | None]:
    data, shape = section["data"], tuple(section["model"]["volume_shape"])
    augment = Augment() if data["augment"] else None
    train = VolumeTextDataset(
        args.volumes, cache, data["train_split"], augment, seed, expected_shape=shape,
        stored_dtype=True,
    )  # fmt: skip
    valid = VolumeTextDataset(
        args.volumes,
        cache,
        data["valid_split"],
        None,
        seed,
        data["max_valid_cases"],
        expected_shape=shape,
    )
    log.info("%d training and %d validation cases", len(train), len(valid))
    if len(train) == 0:
        raise ValueError(f"{args.volumes}: no usable {data['train_split']!r} cases")
    return train, (valid if len(valid) > 1 else None)


def check_cache(texts_csv: str, cache_path: str, cache: Any) -> None:
    """The cache must be built from exactly these structure texts."""
    texts = read_structure_texts(texts_csv, tuple(CHEST_STRUCTURES))
    if cache.metadata.get("texts_sha256") != texts.sha256:
        raise ValueError(
            f"text cache {cache_path} was not built from {texts_csv} "
            "(texts hash differs): rerun ctrg encode-texts"
        )


def export(out: Path, model: Stage1Model, section: dict, result: dict, device: torch.device) -> int:
    """Write model.pt from the best (or last) weights; returns the exported step."""
    source = result["best_checkpoint"] if section["loop"]["export"] == "best" else None
    state = torch.load(source or result["last_checkpoint"], map_location=device, weights_only=True)
    model.load_state_dict(state["model"])
    payload = {
        "model": model.observer.state_dict(),
        "config": section,
        "step": state["step"],
        "observer": observer_config_dict(model.observer.config),
        "provenance": provenance(),
    }
    with atomic_path(out / "model.pt") as tmp:
        torch.save(payload, tmp)
    return int(state["step"])


def _prepare(
    args: argparse.Namespace, section: dict[str, Any], seed: int
) -> tuple[nn.Module, Any, Any, list[str]]:
    """The stage-1 model (text centre set from the training texts) and its datasets.

    Returns:
        (model, train, valid or None, query names).
    """
    cache = load_text_cache(args.text_cache)
    check_cache(args.texts, args.text_cache, cache)
    global_query = section["model"]["queries"] == "global"
    if global_query and cache.report_embeddings is None:
        raise ValueError(
            f"{args.text_cache}: no report_embeddings (queries=global needs "
            "text_encoder.encode_reports: true)"
        )
    train, valid = _datasets(args, section, cache, seed)
    names = ["report"] if global_query else list(CHEST_STRUCTURES)
    model = build_model(section, cache.embeddings.shape[-1], cache.embeddings.shape[1])
    if section["findings"]["weight"] > 0:
        attach_finding_labels(model, args.labels, train, valid, section["findings"])
    rows = torch.as_tensor(train.rows)
    if global_query:
        model.observer.set_text_center(cache.report_embeddings[rows][:, None, :])
    else:
        model.observer.set_text_center(cache.embeddings[rows])
    return model, train, valid, names


def _loop_config(section: dict[str, Any], has_valid: bool) -> LoopConfig:
    """The training loop's config; without validation cases model.pt is the last step."""
    loop = LoopConfig.from_dict({**section["optim"], **section["loop"]})
    if not has_valid:
        log.warning("fewer than 2 validation cases: no retrieval validation, model.pt = last")
        loop.best_metric, section["loop"]["export"] = None, "last"
    elif loop.best_metric == "valid_loss":
        loop.best_mode = "min"
    return loop


def _summary(
    model: nn.Module, section: dict[str, Any], result: dict[str, Any], step: int, **data: Any
) -> dict[str, Any]:
    """summary.json of stage 1: the exported step, the curve, speed and attention."""
    train, valid, device = data["train"], data["valid"], data["device"]
    attention = None
    if valid is not None and section["model"]["queries"] == "structure":
        model.eval()
        with torch.no_grad():
            batch, top_k = section["loop"]["batch_size"], section["data"]["attention_top_k"]
            attention = attention_concentration(model, valid, device, batch, data["names"], top_k)
    return {
        "exported_step": step,
        "steps": result["step"],
        "best": result["best"],
        "final": result["history"][-1] if result["history"] else {},
        "curve": result["history"],
        "train_cases": len(train),
        "valid_cases": len(valid) if valid is not None else 0,
        "volumes_per_second": result["samples_per_second"],
        "peak_memory_mb": result["peak_memory_mb"],
        "elapsed_s": result["elapsed_s"],
        "device": str(device),
        "parameters": sum(p.numel() for p in model.observer.parameters()),
        "attention_concentration": attention,
    }


def run(args: argparse.Namespace) -> int:
    """Train and export (see module doc)."""
    payload, section, seed, device = begin_stage(args, "stage1")
    model, train, valid, names = _prepare(args, section, seed)
    loop = _loop_config(section, valid is not None)
    batch = section["loop"]["batch_size"]
    evaluate = make_evaluate(valid, device, batch, names) if valid is not None else None
    trainer = Trainer(
        model,
        loop,
        args.out,
        train,
        step_fn,
        collate_fn=collate_cases,
        evaluate_fn=evaluate,
        batch_size=batch,
        seed=seed,
        device=device,
        num_workers=section["loop"]["num_workers"],
        signature=section,
    )
    result = trainer.fit(resume=args.resume)
    if not trainer.dist.is_main:
        return 0
    model = unwrap(trainer.model)
    step = export(Path(args.out), model, section, result, device)
    summary = _summary(
        model, section, result, step, train=train, valid=valid, device=device, names=names
    )
    write_stage_summary(args.out, "stage1", payload, summary)
    speed = summary["volumes_per_second"]
    log.info(
        "stage 1 done: exported step %d, %s volumes/s, peak memory %.0f MB",
        step,
        "n/a (nothing left to train)" if speed is None else f"{speed:.2f}",
        summary["peak_memory_mb"],
    )
    return 0


def main(argv: list[str] | None = None) -> int:
    """CLI entry point of ``ctrg stage1``."""
    parser = argparse.ArgumentParser(prog="ctrg stage1", description=__doc__.split("\n")[0])
    parser.add_argument("--config", default=None, help="resolved stage1.json (default: schema)")
    parser.add_argument("--volumes", required=True, help="results/volumes/manifest.csv")
    parser.add_argument("--texts", required=True, help="structure_texts.csv")
    parser.add_argument("--text-cache", required=True, help="embeddings.safetensors")
    parser.add_argument("--out", required=True, help="output folder")
    parser.add_argument(
        "--labels",
        default=None,
        help="report-derived labels CSV (ctrg label; needed when stage1.findings.weight > 0)",
    )
    parser.add_argument(
        "--resume",
        default="auto",
        help="auto (continue from <out>/work when present), never, or a path",
    )
    parser.add_argument(
        "--max-steps", type=int, default=None, help="override stage1.loop.max_steps (benchmarks)"
    )
    parser.add_argument(
        "--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)"
    )
    args = parser.parse_args(argv)
    setup_logging()
    if args.threads:
        torch.set_num_threads(args.threads)
    return run(args)
