"""Multi-label tagging: each sample carries any subset of 6 tags.

Fixed in another style: the model ends in a sigmoid (it outputs probabilities), trained with
F.binary_cross_entropy from a DataLoader; validation runs under inference_mode with the model
left in train mode (no dropout or batch norm), and the tag sets are thresholded on plain
Python lists before the F1 is computed.
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


class Tagger(nn.Module):
    def __init__(self):
        super().__init__()
        self.hidden = nn.Linear(N_FEATURES, 64)
        self.out = nn.Linear(64, N_TAGS)

    def forward(self, x):
        return torch.sigmoid(self.out(F.relu(self.hidden(x))))


def micro_f1(predicted, truth):
    tp = fp = fn = 0
    for p_row, t_row in zip(predicted, truth):
        for p, t in zip(p_row, t_row):
            tp += p and t
            fp += p and not t
            fn += t and not p
    return 2 * tp / (2 * tp + fp + fn)


def train(model, loader, epochs=15):
    optimizer = torch.optim.Adam(model.parameters(), lr=0.005)
    losses = []
    for _ in range(epochs):
        total, n = 0.0, 0
        for x, y in loader:
            optimizer.zero_grad()
            loss = F.binary_cross_entropy(model(x), y)
            loss.backward()
            optimizer.step()
            total += loss.item() * len(x)
            n += len(x)
        losses.append(round(total / n, 4))
    return losses


def main():
    X_train, y_train = make_data(3000, seed=1)
    X_val, y_val = make_data(600, seed=2)
    model = Tagger()
    losses = train(model, DataLoader(TensorDataset(X_train, y_train), batch_size=100, shuffle=True))
    with torch.inference_mode():
        probabilities = model(X_val).tolist()
    predicted = [[p >= 0.5 for p in row] for row in probabilities]
    truth = [[t > 0.5 for t in row] for row in y_val.tolist()]
    print("LOSSES:" + json.dumps(losses))
    print(f"FINAL_LOSS:{losses[-1]:.4f}")
    print(f"F1:{micro_f1(predicted, truth):.4f}")


if __name__ == "__main__":
    main()
