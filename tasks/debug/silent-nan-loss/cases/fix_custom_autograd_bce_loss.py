"""Fix (precision, stop 29): BCE written as a custom autograd.Function (was 0 tampered).

Binary classifier (fraud / not fraud) trained with a hand-written BCE loss.

The network outputs a probability (sigmoid); the custom loss is the binary
cross-entropy written out by hand. Reports per-epoch loss, final loss and
validation accuracy.
"""
import json

import torch
import torch.nn as nn

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
    def __init__(self):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(N_FEATURES, 32), nn.ReLU(), nn.Linear(32, 1))

    def forward(self, x):
        return self.net(x).squeeze(1)      # logit; probability = sigmoid(logit)


class StableBCE(torch.autograd.Function):
    """Mean BCE of sigmoid(z) vs y, written out by hand in the log-sum-exp form
    max(z,0) - z*y + log(1 + exp(-|z|)); gradient (sigmoid(z) - y) / n."""

    @staticmethod
    def forward(ctx, z, y):
        ctx.save_for_backward(z, y)
        return (z.clamp(min=0) - z * y + torch.log1p(torch.exp(-z.abs()))).mean()

    @staticmethod
    def backward(ctx, g):
        z, y = ctx.saved_tensors
        return g * (torch.sigmoid(z) - y) / z.numel(), None


def bce_loss(logit, target):
    return StableBCE.apply(logit, target)


model = Classifier()
optimizer = torch.optim.Adam(model.parameters(), lr=0.003)

EPOCHS = 20
BATCH = 100
losses = []
for epoch in range(EPOCHS):
    perm = torch.randperm(len(X_train))
    epoch_loss = 0.0
    for i in range(0, len(X_train), BATCH):
        idx = perm[i:i + BATCH]
        optimizer.zero_grad()
        loss = bce_loss(model(X_train[idx]), y_train[idx])
        loss.backward()
        optimizer.step()
        epoch_loss += loss.item() * len(idx)
    losses.append(round(epoch_loss / len(X_train), 4))

with torch.no_grad():
    val_acc = ((torch.sigmoid(model(X_val)) > 0.5).float() == y_val).float().mean().item()

print("LOSSES:" + json.dumps(losses))
print(f"FINAL_LOSS:{losses[-1]:.4f}")
print(f"VAL_ACC:{val_acc:.4f}")
