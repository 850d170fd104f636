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

model = nn.Sequential(nn.Linear(N_FEATURES, 64), nn.ReLU(), nn.Linear(64, N_TAGS))
criterion = nn.BCEWithLogitsLoss()
params = {k: v.detach().clone().requires_grad_(True) for k, v in model.named_parameters()}
optimizer = torch.optim.Adam(params.values(), lr=0.005)

EPOCHS = 15
BATCH = 100
losses = []
for epoch in range(EPOCHS):
    perm = torch.randperm(len(X_train))
    epoch_loss = 0.0
    for i in range(0, len(X_train), BATCH):
        idx = perm[i:i + BATCH]
        optimizer.zero_grad()
        logits = torch.func.functional_call(model, params, (X_train[idx],))
        loss = criterion(logits, y_train[idx])
        loss.backward()
        optimizer.step()
        epoch_loss += loss.item() * len(idx)
    losses.append(round(epoch_loss / len(X_train), 4))

model.load_state_dict({k: v.detach() for k, v in params.items()})

with torch.no_grad():
    logits = model(X_val)
    pred = (torch.sigmoid(logits) > 0.5).float()
    f1 = f1_score(pred, y_val)

print("LOSSES:" + json.dumps(losses))
print(f"FINAL_LOSS:{losses[-1]:.4f}")
print(f"F1:{f1:.4f}")
