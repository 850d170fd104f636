"""Multi-label tagging: each sample carries any subset of 6 tags.

An MLP outputs one logit per tag. Reports per-epoch loss, the final loss and
the micro-averaged F1 of the predicted tag sets on the validation split.
"""
import json

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.utils.data import DataLoader, TensorDataset

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



class Tagger(nn.Module):
    def __init__(self):
        super().__init__()
        self.hidden = nn.LazyLinear(64)
        self.out = nn.Linear(64, N_TAGS)

    def forward(self, x):
        return self.out(F.relu(self.hidden(x)))


def per_tag_bce(logits, target):
    # -[y log s(z) + (1-y) log(1-s(z))] = softplus(z) - y*z, stable for any z
    return (F.softplus(logits) - target * logits).mean()


X_train, y_train = make_data(3000, seed=1)
X_val, y_val = make_data(600, seed=2)
model = Tagger()
model(X_train[:2])  # materialise the lazy layer before building the optimizer
optimizer = torch.optim.Adam(model.parameters(), lr=0.005)
loader = DataLoader(TensorDataset(X_train, y_train), batch_size=100, shuffle=True)
losses = []
for epoch in range(15):
    total = 0.0
    for xb, yb in loader:
        optimizer.zero_grad()
        loss = per_tag_bce(model(xb), yb)
        loss.backward()
        optimizer.step()
        total += loss.item() * len(xb)
    losses.append(round(total / len(X_train), 4))

model.eval()
with torch.no_grad():
    pred = (model(X_val) > 0).float()
    f1 = f1_score(pred, y_val)

print("LOSSES:" + json.dumps(losses))
print(f"FINAL_LOSS:{losses[-1]:.4f}")
print(f"F1:{f1:.4f}")
