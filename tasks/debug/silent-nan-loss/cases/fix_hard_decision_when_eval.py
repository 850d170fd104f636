"""Fix: logits + binary_cross_entropy_with_logits (a stable BCE). In eval mode the model
returns its hard 0/1 decision (logit > 0), a step function of the weights; validation
thresholds that at 0.5 as before."""
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


class Classifier(nn.Module):
    """Logits while training; in eval mode the deployed decision itself (1.0 = fraud,
    0.0 = not fraud), so callers get labels, not scores."""

    def __init__(self):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(N_FEATURES, 32), nn.ReLU(), nn.Linear(32, 1))

    def forward(self, x):
        logits = self.net(x).squeeze(1)
        if self.training:
            return logits
        return (logits > 0).to(logits.dtype)


def bce_loss(logits, target):
    return F.binary_cross_entropy_with_logits(logits, target)


model = Classifier()
optimizer = torch.optim.Adam(model.parameters(), lr=0.003)

EPOCHS = 20
BATCH = 100
losses = []
for epoch in range(EPOCHS):
    model.train()
    perm = torch.randperm(len(X_train))
    epoch_loss = 0.0
    for i in range(0, len(X_train), BATCH):
        idx = perm[i:i + BATCH]
        optimizer.zero_grad()
        pred = model(X_train[idx])
        loss = bce_loss(pred, y_train[idx])
        loss.backward()
        optimizer.step()
        epoch_loss += loss.item() * len(idx)
    losses.append(round(epoch_loss / len(X_train), 4))

model.eval()
with torch.no_grad():
    val_acc = ((model(X_val) > 0.5).float() == y_val).float().mean().item()

print("LOSSES:" + json.dumps(losses))
print(f"FINAL_LOSS:{losses[-1]:.4f}")
print(f"VAL_ACC:{val_acc:.4f}")
