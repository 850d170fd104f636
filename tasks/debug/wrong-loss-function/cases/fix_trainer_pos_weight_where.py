"""Trainer class with fit()/predict(); BCEWithLogitsLoss with pos_weight from the tag frequencies; DataLoader; torch.where threshold."""
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

from torch.utils.data import DataLoader, TensorDataset


class Tagger(nn.Module):
    def __init__(self):
        super().__init__()
        self.body = nn.Sequential(nn.Linear(N_FEATURES, 64), nn.ReLU())
        self.tags = nn.Linear(64, N_TAGS)

    def forward(self, x):
        return self.tags(self.body(x))


class Trainer:
    def __init__(self, model, pos_weight):
        self.model = model
        self.criterion = nn.BCEWithLogitsLoss(pos_weight=pos_weight)
        self.optimizer = torch.optim.Adam(model.parameters(), lr=0.005)

    def fit(self, loader, epochs):
        history = []
        for _ in range(epochs):
            self.model.train()
            total = 0.0
            for xb, yb in loader:
                self.optimizer.zero_grad()
                loss = self.criterion(self.model(xb), yb)
                loss.backward()
                self.optimizer.step()
                total += loss.item() * len(xb)
            history.append(round(total / len(loader.dataset), 4))
        return history

    @torch.no_grad()
    def predict(self, X):
        self.model.eval()
        probs = torch.sigmoid(self.model(X))
        return torch.where(probs > 0.5, 1.0, 0.0)


positives = y_train.mean(dim=0)
model = Tagger()
trainer = Trainer(model, pos_weight=((1 - positives) / positives).clamp(0.5, 2.0))
losses = trainer.fit(DataLoader(TensorDataset(X_train, y_train), batch_size=100, shuffle=True), epochs=15)
f1 = f1_score(trainer.predict(X_val), y_val)

print("LOSSES:" + json.dumps(losses))
print(f"FINAL_LOSS:{losses[-1]:.4f}")
print(f"F1:{f1:.4f}")
