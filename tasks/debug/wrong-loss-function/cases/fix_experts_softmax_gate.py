"""Fix (precision, stop 29): two experts mixed per sample by a softmax gate (a softmax over two
entries inside the model, not over the tags), trained with per-tag BCE."""
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

class SpectralExpertMixture(nn.Module):
    """Two MLP experts (spectral-norm hidden layers) mixed per sample by a softmax gate."""

    def __init__(self):
        super().__init__()
        self.experts = nn.ModuleList(
            nn.Sequential(nn.Linear(N_FEATURES, 48), nn.ReLU(), nn.Linear(48, N_TAGS))
            for _ in range(2))
        self.gate = nn.Linear(N_FEATURES, 2)

    def forward(self, x):
        g = torch.softmax(self.gate(x), dim=-1)                       # [N, 2]
        z = torch.stack([e(x) for e in self.experts], dim=-1)         # [N, TAGS, 2]
        return (z * g.unsqueeze(1)).sum(dim=-1)


model = SpectralExpertMixture()
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

model.eval()
with torch.no_grad():
    logits = model(X_val)
    pred = (torch.sigmoid(logits) > 0.5).float()
    f1 = f1_score(pred, y_val)

print("LOSSES:" + json.dumps(losses))
print(f"FINAL_LOSS:{losses[-1]:.4f}")
print(f"F1:{f1:.4f}")
