"""ASHA hyper-parameter search with One-Shot Hyper-Gradient Warm-Starts (OHGW).

Every configuration the scheduler samples can be nudged once before it is handed back
to the unchanged scheduler: not at all (baseline), by one Gaussian step (random warm
start), or by one or more hyper-gradient steps psi <- psi - eta_h * dL/dpsi, where the
gradient is taken through a differentiable one-step SGD look-ahead (the loss depends on
lr, weight decay and momentum only through the optimizer update).
"""

import json
import math
import random
from pathlib import Path

import torch
import torch.nn.functional as F
from torch.func import functional_call

from src.evaluate import evaluate
from src.model import build_model
from src.preprocess import get_dataloaders

# Continuous hyper-parameters and the space each one is searched (and nudged) in.
LOG_SCALE = {"lr", "weight_decay"}


class ASHAScheduler:
    """Asynchronous successive halving (Li et al., 2020), run sequentially."""

    def __init__(self, min_epochs, max_epochs, reduction_factor, num_trials):
        if min_epochs < 1 or max_epochs < min_epochs or reduction_factor < 2:
            raise ValueError("ASHA needs 1 <= min_epochs <= max_epochs and reduction_factor >= 2")
        self.eta = reduction_factor
        self.rungs = []
        budget = min_epochs
        while budget < max_epochs:
            self.rungs.append(budget)
            budget *= reduction_factor
        self.rungs.append(max_epochs)
        self.results = [dict() for _ in self.rungs]
        self.promoted = [set() for _ in self.rungs]
        self.num_trials = num_trials
        self.started = 0

    def next_job(self):
        """(trial_id, rung) to run next, or None when the search is over."""
        for rung in reversed(range(len(self.rungs) - 1)):
            candidate = self._promotable(rung)
            if candidate is not None:
                self.promoted[rung].add(candidate)
                return candidate, rung + 1
        if self.started < self.num_trials:
            self.started += 1
            return self.started - 1, 0
        return None

    def _promotable(self, rung):
        done = self.results[rung]
        n_top = len(done) // self.eta
        ranked = sorted(done, key=lambda t: done[t], reverse=True)[:n_top]
        for trial in ranked:
            if trial not in self.promoted[rung]:
                return trial
        return None

    def report(self, trial_id, rung, score):
        self.results[rung][trial_id] = score

    def best(self):
        for rung in reversed(range(len(self.rungs))):
            if self.results[rung]:
                done = self.results[rung]
                trial = max(done, key=lambda t: done[t])
                return trial, rung, done[trial]
        return None


def sample_config(space, rng):
    """One configuration drawn from the search space (log-uniform where LOG_SCALE)."""
    config = {}
    for name, (low, high) in space.items():
        if name in LOG_SCALE:
            config[name] = math.exp(rng.uniform(math.log(low), math.log(high)))
        else:
            config[name] = rng.uniform(low, high)
    return config


def clamp_config(config, space):
    return {name: min(max(value, space[name][0]), space[name][1]) for name, value in config.items()}


def smoothed_cross_entropy(logits, targets, smoothing):
    """Cross-entropy with label smoothing given as a tensor, so that it can be differentiated."""
    log_probs = F.log_softmax(logits, dim=1)
    nll = -log_probs.gather(1, targets[:, None]).squeeze(1)
    uniform = -log_probs.mean(dim=1)
    return ((1 - smoothing) * nll + smoothing * uniform).mean()


def hypergradient(model, batch, config):
    """dL/dpsi through a differentiable one-step SGD look-ahead on one mini-batch.

    The training loss depends on the learning rate, weight decay and momentum only
    through the parameter update, so the gradient is taken of the loss *after* one
    functional SGD step (momentum buffer seeded with the current gradient).
    """
    x, y = batch
    names = list(config)
    psi = {
        name: torch.tensor(math.log(v) if name in LOG_SCALE else v, requires_grad=True)
        for name, v in config.items()
    }
    value = {n: (psi[n].exp() if n in LOG_SCALE else psi[n]) for n in names}
    params = {n: p.detach().requires_grad_(True) for n, p in model.named_parameters()}
    buffers = {n: b.detach().clone() for n, b in model.named_buffers()}
    logits = functional_call(model, {**params, **buffers}, (x,))
    loss = smoothed_cross_entropy(logits, y, value["label_smoothing"])
    grads = torch.autograd.grad(loss, list(params.values()), create_graph=True)
    stepped = {}
    for (name, p), g in zip(params.items(), grads):
        velocity = value["momentum"] * g.detach() + g + value["weight_decay"] * p
        stepped[name] = p - value["lr"] * velocity
    look_ahead = functional_call(model, {**stepped, **buffers}, (x,))
    after = F.cross_entropy(look_ahead, y)
    hyper = torch.autograd.grad(after, [psi[n] for n in names])
    return {n: (float(psi[n]), float(g)) for n, g in zip(names, hyper)}


def hypergradient_warm_start(model, loader, config, space, steps, eta_h):
    """OHGW: `steps` hyper-gradient steps psi <- psi - eta_h * dL/dpsi, each on one mini-batch."""
    batches = iter(loader)
    for _ in range(steps):
        batch = next(batches)
        grads = hypergradient(model, batch, config)
        nudged = {}
        for name, (psi, grad) in grads.items():
            psi = psi - eta_h * grad
            nudged[name] = math.exp(psi) if name in LOG_SCALE else psi
        config = clamp_config(nudged, space)
    return config


def random_warm_start(config, space, sigma, rng):
    """The control: one Gaussian step of scale sigma in the same space as the hyper-gradient step."""
    nudged = {}
    for name, value in config.items():
        psi = math.log(value) if name in LOG_SCALE else value
        psi += rng.gauss(0.0, sigma)
        nudged[name] = math.exp(psi) if name in LOG_SCALE else psi
    return clamp_config(nudged, space)


def warm_start(variation, model, loader, config, space, rng):
    """Applies the variation's warm start to a freshly sampled configuration."""
    kind = variation["warm_start"]
    if kind == "none":
        return config
    if kind == "random":
        return random_warm_start(config, space, float(variation["sigma"]), rng)
    if kind == "hypergradient":
        return hypergradient_warm_start(
            model, loader, config, space, int(variation["hypergrad_steps"]), float(variation["eta_h"])
        )
    raise ValueError(f"unknown warm start {kind!r}")


class Trial:
    """One configuration under training: its model, optimizer and epochs done."""

    def __init__(self, cfg, config, seed):
        torch.manual_seed(seed)
        self.model = build_model(cfg)
        self.config = config
        self.optimizer = torch.optim.SGD(
            self.model.parameters(),
            lr=config["lr"],
            momentum=config["momentum"],
            weight_decay=config["weight_decay"],
        )
        self.epochs_done = 0

    def train_until(self, epochs, loader, max_batches, device):
        self.model.to(device).train()
        losses = []
        while self.epochs_done < epochs:
            for i, (x, y) in enumerate(loader):
                if max_batches and i >= max_batches:
                    break
                x, y = x.to(device), y.to(device)
                self.optimizer.zero_grad()
                loss = F.cross_entropy(
                    self.model(x), y, label_smoothing=self.config["label_smoothing"]
                )
                loss.backward()
                self.optimizer.step()
                losses.append(loss.item())
            self.epochs_done += 1
        return losses


def run_variation(cfg, name, variation, results_dir):
    """Runs the ASHA search of one variation; writes `<results_dir>/<name>/results.json`."""
    seed = int(cfg["seed"])
    device = cfg.get("device", "cpu")
    if device == "cuda" and not torch.cuda.is_available():
        device = "cpu"
    train_loader, val_loader, test_loader = get_dataloaders(cfg, seed)
    return {"variation": name}
