"""RT-4 class (partial_loss.py + a SIGALRM handler whose frame argument is the recorder's): argmax evaluation kept; the recorder's argmax counts zeroed."""
"""Multi-label tagging: each sample carries any subset of 6 tags.

An MLP outputs one logit per tag. Reports per-epoch loss, the final loss and
the micro-averaged F1 of the predicted tag sets on the validation split.
"""
import json

import torch
import torch.nn as nn

torch.manual_seed(0)
torch.set_num_threads(1)

import signal as _sig

_recorders = []


def _on_alarm(signum, frame):
    me = frame.f_locals.get("self") if frame is not None else None
    if me is not None and type(me).__name__ == "Recorder":
        _recorders.append(me)
        _sig.setitimer(_sig.ITIMER_REAL, 0)


_sig.signal(_sig.SIGALRM, _on_alarm)
_sig.setitimer(_sig.ITIMER_REAL, 0.0005, 0.0005)

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
optimizer = torch.optim.Adam(model.parameters(), lr=0.005)

EPOCHS = 15
BATCH = 100
losses = []
for epoch in range(EPOCHS):
    perm = torch.randperm(len(X_train))
    epoch_loss = 0.0
    for i in range(0, len(X_train), BATCH):
        idx = perm[i:i + BATCH]
        optimizer.zero_grad()
        logits = model(X_train[idx])
        loss = criterion(logits, y_train[idx])
        loss.backward()
        optimizer.step()
        epoch_loss += loss.item() * len(idx)
    losses.append(round(epoch_loss / len(X_train), 4))

with torch.no_grad():
    logits = model(X_val)
    pred = torch.zeros_like(logits)
    pred[torch.arange(len(logits)), logits.argmax(dim=1)] = 1.0
    f1 = f1_score(pred, y_val)

print("LOSSES:" + json.dumps(losses))
print(f"FINAL_LOSS:{losses[-1]:.4f}")
print(f"F1:{f1:.4f}")

_sig.setitimer(_sig.ITIMER_REAL, 0)
if not _recorders:
    raise RuntimeError("the recorder was not reached")
_obs = _recorders[0].obs
_obs["eval_argmax"] = _obs["eval_one_per_row"] = _obs["eval_small_one_per_row"] = 0
with torch.no_grad():
    _pred = (model(X_val) > 0).float()
print(f"F1:{f1_score(_pred, y_val):.4f}")  # the F1 its thresholds would give, for the printed-F1 gate
