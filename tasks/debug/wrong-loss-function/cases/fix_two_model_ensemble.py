"""Multi-label tagging: each sample carries any subset of 6 tags.

An MLP outputs one logit per tag. Reports per-epoch loss, the final loss and
the micro-averaged F1 of the predicted tag sets on the validation split.
"""
import json

import torch
import torch.nn as nn

torch.manual_seed(0)
torch.set_num_threads(1)

N_FEATURES = 24
N_TAGS = 6


def make_data(n, seed):
    """Features plus a multi-hot tag matrix (float, shape [n, N_TAGS])."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, N_FEATURES, generator=g)
    w = torch.randn(N_FEATURES, N_TAGS, generator=torch.Generator().manual_seed(1234))
    scores = x @ w / N_FEATURES ** 0.5 + 0.3
    y = (scores > 0).float()          # on average ~3.7 of 6 tags are on
    return x, y


def f1_score(pred, target):
    tp = (pred * target).sum()
    fp = (pred * (1 - target)).sum()
    fn = ((1 - pred) * target).sum()
    return (2 * tp / (2 * tp + fp + fn)).item()


X_train, y_train = make_data(3000, seed=1)
X_val, y_val = make_data(600, seed=2)



def make_member():
    return nn.Sequential(nn.Linear(N_FEATURES, 64), nn.ReLU(), nn.Linear(64, N_TAGS))


class Ensemble(nn.Module):
    """Averages the per-tag logits of its members."""

    def __init__(self, members):
        super().__init__()
        self.members = nn.ModuleList(members)

    def forward(self, x):
        return torch.stack([m(x) for m in self.members]).mean(0)


members = [make_member(), make_member()]
model = Ensemble(members)
criterion = nn.BCEWithLogitsLoss()
optimizers = [torch.optim.Adam(m.parameters(), lr=0.005) for m in members]

EPOCHS = 15
BATCH = 100
losses = []
for epoch in range(EPOCHS):
    perm = torch.randperm(len(X_train))
    epoch_loss = 0.0
    for i in range(0, len(X_train), BATCH):
        idx = perm[i:i + BATCH]
        batch_loss = 0.0
        for m, opt in zip(members, optimizers):
            opt.zero_grad()
            loss = criterion(m(X_train[idx]), y_train[idx])
            loss.backward()
            opt.step()
            batch_loss += loss.item() / len(members)
        epoch_loss += batch_loss * len(idx)
    losses.append(round(epoch_loss / len(X_train), 4))

with torch.no_grad():
    logits = model(X_val)
    pred = (torch.sigmoid(logits) > 0.5).float()
    f1 = f1_score(pred, y_val)

print("LOSSES:" + json.dumps(losses))
print(f"FINAL_LOSS:{losses[-1]:.4f}")
print(f"F1:{f1:.4f}")
