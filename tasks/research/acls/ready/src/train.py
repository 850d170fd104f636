"""src/train.py - trains one run: label-smoothed cross-entropy, fixed or confidence-adaptive."""
from __future__ import annotations

import json
import random
from pathlib import Path

import hydra
import numpy as np
import torch
from omegaconf import DictConfig, OmegaConf

from src.model import BowClassifier
from src.preprocess import build_loaders


def load_run(cfg: DictConfig) -> DictConfig:
    """The global defaults with the run's own settings merged over them."""
    run_file = Path(__file__).resolve().parents[1] / "config" / "runs" / f"{cfg.run}.yaml"
    defaults = OmegaConf.create(OmegaConf.to_container(cfg, resolve=True))
    merged = OmegaConf.merge(defaults, OmegaConf.load(run_file))
    if cfg.mode == "trial":
        merged.training.epochs = 1
        merged.dataset.max_train_samples = 256
        merged.dataset.max_eval_samples = 128
    return merged


def smoothing_for(logits, targets, method: str, eps: float) -> torch.Tensor:
    """Per-example smoothing strength: eps, or eps scaled by the confidence in the label."""
    if method == "adaptive":
        confidence = torch.softmax(logits.detach(), dim=-1).gather(1, targets[:, None]).squeeze(1)
        return eps * confidence
    return torch.full(targets.shape, eps, dtype=logits.dtype)


def smoothed_loss(logits, targets, eps: torch.Tensor) -> torch.Tensor:
    logp = torch.log_softmax(logits, dim=-1)
    nll = -logp.gather(1, targets[:, None]).squeeze(1)
    uniform = -logp.mean(dim=-1)
    return ((1 - eps) * nll + eps * uniform).mean()


@torch.no_grad()
def accuracy(model, loader) -> float:
    model.eval()
    right = total = 0
    for ids, offsets, labels in loader:
        right += int((model(ids, offsets).argmax(-1) == labels).sum())
        total += len(labels)
    return right / max(total, 1)


def train(cfg: DictConfig) -> dict:
    torch.manual_seed(cfg.training.seed)
    random.seed(cfg.training.seed)
    np.random.seed(cfg.training.seed)
    train_loader, eval_loader = build_loaders(cfg)
    model = BowClassifier(cfg.model.vocab_size, cfg.model.embed_dim, num_classes=2)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.training.learning_rate,
                            weight_decay=cfg.training.weight_decay)
    losses = []
    for _ in range(cfg.training.epochs):
        model.train()
        for ids, offsets, labels in train_loader:
            logits = model(ids, offsets)
            eps = smoothing_for(logits, labels, cfg.method, cfg.training.label_smoothing)
            loss = smoothed_loss(logits, labels, eps)
            opt.zero_grad()
            loss.backward()
            opt.step()
            losses.append(float(loss))
    metrics = {"run_id": cfg.run, "method": cfg.method, "accuracy": accuracy(model, eval_loader),
               "final_loss": losses[-1] if losses else None}
    out = Path(cfg.results_dir) / cfg.run
    out.mkdir(parents=True, exist_ok=True)
    (out / "metrics.json").write_text(json.dumps(metrics, indent=2))
    return metrics


@hydra.main(config_path="../config", config_name="config", version_base=None)
def main(cfg: DictConfig) -> None:
    print(json.dumps(train(load_run(cfg))))


if __name__ == "__main__":
    main()
