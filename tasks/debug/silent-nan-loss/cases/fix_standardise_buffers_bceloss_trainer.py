"""Features standardised inside the model (buffers), sigmoid kept, nn.BCELoss, TensorDataset + DataLoader, Trainer class."""
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

from torch.utils.data import DataLoader, TensorDataset


class Classifier(nn.Module):
    def __init__(self, mean, std):
        super().__init__()
        self.register_buffer("mean", mean)
        self.register_buffer("std", std)
        self.net = nn.Sequential(nn.Linear(N_FEATURES, 32), nn.ReLU(), nn.Linear(32, 1))

    def forward(self, x):
        return torch.sigmoid(self.net((x - self.mean) / self.std)).squeeze(1)


class Trainer:
    def __init__(self, model, lr):
        self.model = model
        self.loss_fn = nn.BCELoss()
        self.optimizer = torch.optim.Adam(model.parameters(), lr=lr)

    def fit(self, loader, epochs):
        history = []
        for _ in range(epochs):
            self.model.train()
            total = 0.0
            for xb, yb in loader:
                self.optimizer.zero_grad()
                loss = self.loss_fn(self.model(xb), yb)
                loss.backward()
                self.optimizer.step()
                total += loss.item() * len(xb)
            history.append(round(total / len(loader.dataset), 4))
        return history

    @torch.no_grad()
    def accuracy(self, X, y):
        self.model.eval()
        return ((self.model(X) > 0.5).float() == y).float().mean().item()


model = Classifier(X_train.mean(dim=0), X_train.std(dim=0))
trainer = Trainer(model, lr=0.003)
loader = DataLoader(TensorDataset(X_train, y_train), batch_size=100, shuffle=True)
losses = trainer.fit(loader, epochs=20)
val_acc = trainer.accuracy(X_val, y_val)

print("LOSSES:" + json.dumps(losses))
print(f"FINAL_LOSS:{losses[-1]:.4f}")
print(f"VAL_ACC:{val_acc:.4f}")
