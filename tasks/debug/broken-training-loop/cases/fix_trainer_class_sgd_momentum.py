"""Trainer class: fit()/evaluate(), TensorDataset + DataLoader, SGD with momentum, logging."""
import json
import logging

import torch
import torch.nn as nn

torch.manual_seed(0)
torch.set_num_threads(1)

N_FEATURES = 20


def make_data(n, seed):
    """Two overlapping Gaussian classes; features are raw (unnormalised) readings."""
    g = torch.Generator().manual_seed(seed)
    y = torch.randint(0, 2, (n,), generator=g)
    direction = torch.linspace(-1.0, 1.0, N_FEATURES)
    x = torch.randn(n, N_FEATURES, generator=g) * 3.0
    x = x + (2 * y.float() - 1).unsqueeze(1) * direction * 2.0
    return x, y


X_train, y_train = make_data(1000, seed=1)
X_val, y_val = make_data(500, seed=2)

from torch.utils.data import DataLoader, TensorDataset

logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
log = logging.getLogger("trainer")


class Trainer:
    def __init__(self, model, lr=0.01, momentum=0.9, batch_size=100):
        self.model = model
        self.criterion = nn.CrossEntropyLoss()
        self.optimizer = torch.optim.SGD(model.parameters(), lr=lr, momentum=momentum)
        self.batch_size = batch_size

    def fit(self, X, y, epochs):
        loader = DataLoader(TensorDataset(X, y), batch_size=self.batch_size, shuffle=True)
        history = []
        for epoch in range(epochs):
            self.model.train()
            total, seen = 0.0, 0
            for xb, yb in loader:
                self.optimizer.zero_grad(set_to_none=True)
                loss = self.criterion(self.model(xb), yb)
                loss.backward()
                self.optimizer.step()
                total += loss.item() * len(xb)
                seen += len(xb)
            history.append(round(total / seen, 4))
            log.info("epoch %d loss %.4f", epoch + 1, history[-1])
        return history

    @torch.no_grad()
    def evaluate(self, X, y):
        self.model.eval()
        return (self.model(X).argmax(dim=1) == y).float().mean().item()


model = nn.Linear(N_FEATURES, 2)
trainer = Trainer(model)
losses = trainer.fit(X_train, y_train, epochs=20)
val_acc = trainer.evaluate(X_val, y_val)

print("LOSSES:" + json.dumps(losses))
print(f"FINAL_LOSS:{losses[-1]:.4f}")
print(f"VAL_ACC:{val_acc:.4f}")
