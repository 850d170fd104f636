"""Binary classifier (fraud / not fraud) trained with a hand-written BCE loss.

The network outputs a probability (sigmoid); the custom loss is the binary
cross-entropy written out by hand. Reports per-epoch loss, final loss and
validation accuracy.
"""
import json

import torch
import torch.nn as nn
import torch.nn.functional as F

torch.manual_seed(0)
torch.set_num_threads(1)

N_FEATURES = 16


def make_data(n, seed):
    """Transaction features in their raw units (amounts, counts, durations)."""
    g = torch.Generator().manual_seed(seed)
    y = torch.randint(0, 2, (n,), generator=g).float()
    scale = torch.logspace(0, 1.0, N_FEATURES)          # 1 .. 10
    shift = torch.linspace(1.0, -1.0, N_FEATURES) * 0.8
    x = (torch.randn(n, N_FEATURES, generator=g) + (2 * y - 1).unsqueeze(1) * shift) * scale
    return x, y


X_train, y_train = make_data(2000, seed=1)
X_val, y_val = make_data(500, seed=2)


class LogitNet(nn.Module):
    """Same network without the final sigmoid: it returns log-odds."""

    def __init__(self):
        super().__init__()
        self.l1 = nn.Linear(N_FEATURES, 32)
        self.l2 = nn.Linear(32, 1)

    def forward(self, x):
        return self.l2(torch.relu(self.l1(x))).view(-1)


def stable_bce(logits, target):
    # log(sigmoid(z)) and log(1 - sigmoid(z)) = log(sigmoid(-z)), both finite for any z
    log_p = F.logsigmoid(logits)
    log_not_p = F.logsigmoid(-logits)
    return -(target * log_p + (1 - target) * log_not_p).mean()


class Trainer:
    def __init__(self, model, lr):
        self.model = model
        self.opt = torch.optim.Adam(
            [{"params": model.l1.parameters(), "lr": lr},
             {"params": model.l2.parameters(), "lr": lr * 2}])

    def epoch(self, X, y, batch):
        self.model.train()
        perm = torch.randperm(len(X))
        total = 0.0
        for idx in perm.split(batch):
            self.opt.zero_grad()
            loss = stable_bce(self.model(X[idx]), y[idx])
            torch.autograd.backward(loss)
            self.opt.step()
            total += loss.detach().item() * len(idx)
        return total / len(X)

    @torch.no_grad()
    def accuracy(self, X, y):
        self.model.eval()
        probs = torch.sigmoid(self.model(X))
        return (torch.where(probs > 0.5, 1.0, 0.0) == y).float().mean().item()


model = LogitNet()
trainer = Trainer(model, 0.003)
losses = [round(trainer.epoch(X_train, y_train, 100), 4) for _ in range(20)]
val_acc = trainer.accuracy(X_val, y_val)

print("LOSSES:" + json.dumps(losses))
print(f"FINAL_LOSS:{losses[-1]:.4f}")
print(f"VAL_ACC:{val_acc:.4f}")
