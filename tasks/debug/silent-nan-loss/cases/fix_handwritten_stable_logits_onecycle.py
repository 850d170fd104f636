"""Stable BCE written by hand on logits (max(z,0) - z*y + log1p(exp(-|z|))), AdamW + OneCycleLR."""
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
    def __init__(self):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(N_FEATURES, 32), nn.ReLU(), nn.Linear(32, 1))

    def forward(self, x):
        return self.net(x).squeeze(1)  # logits; the probability is sigmoid(logit)


def bce_from_logits(z, target):
    # -[y*log(sigmoid z) + (1-y)*log(1 - sigmoid z)], rearranged so no log ever sees 0
    return (torch.clamp(z, min=0) - z * target + torch.log1p(torch.exp(-z.abs()))).mean()


model = Classifier()
EPOCHS = 20
BATCH = 100
optimizer = torch.optim.AdamW(model.parameters(), lr=0.003, weight_decay=0.0)
scheduler = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=0.01, epochs=EPOCHS,
                                                steps_per_epoch=len(X_train) // BATCH)
losses = []
for epoch in range(EPOCHS):
    perm = torch.randperm(len(X_train))
    epoch_loss = 0.0
    for i in range(0, len(X_train), BATCH):
        idx = perm[i:i + BATCH]
        optimizer.zero_grad()
        loss = bce_from_logits(model(X_train[idx]), y_train[idx])
        loss.backward()
        optimizer.step()
        scheduler.step()
        epoch_loss += loss.item() * len(idx)
    losses.append(round(epoch_loss / len(X_train), 4))

with torch.no_grad():
    val_acc = ((torch.sigmoid(model(X_val)) > 0.5).float() == y_val).float().mean().item()

print("LOSSES:" + json.dumps(losses))
print(f"FINAL_LOSS:{losses[-1]:.4f}")
print(f"VAL_ACC:{val_acc:.4f}")
