"""Fix: BCEWithLogitsLoss per tag on logits while training; the model returns sigmoid
probabilities when not training, thresholded at 0.5. A self-attention block over feature
tokens (scaled_dot_product_attention), gradient clipping, cosine schedule."""
import json

import torch
import torch.nn as nn
import torch.nn.functional as F

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

class TokenAttention(nn.Module):
    """Self-attention over 6 feature tokens (F.scaled_dot_product_attention), mean-pooled,
    then a linear tag head. Returns logits while training and tag probabilities
    (sigmoid) when not training."""

    def __init__(self, tokens=6, dim=32):
        super().__init__()
        self.tokens = tokens
        self.embed = nn.Linear(N_FEATURES // tokens, dim)
        self.pos = nn.Parameter(torch.zeros(tokens, dim))
        self.qkv = nn.Linear(dim, 3 * dim)
        self.norm = nn.LayerNorm(dim)
        self.head = nn.Linear(tokens * dim, N_TAGS)

    def forward(self, x):
        h = self.embed(x.reshape(x.shape[0], self.tokens, -1)) + self.pos
        q, k, v = self.qkv(self.norm(h)).chunk(3, dim=-1)
        h = h + F.scaled_dot_product_attention(q, k, v)
        logits = self.head(h.flatten(1))
        return logits if self.training else torch.sigmoid(logits)


model = TokenAttention()
criterion = nn.BCEWithLogitsLoss()
optimizer = torch.optim.Adam(model.parameters(), lr=0.005)

EPOCHS = 15
BATCH = 100
scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=EPOCHS)
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
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        epoch_loss += loss.item() * len(idx)
    scheduler.step()
    losses.append(round(epoch_loss / len(X_train), 4))

model.eval()
with torch.no_grad():
    probs = model(X_val)            # probabilities in eval mode
    pred = (probs > 0.5).float()
    f1 = f1_score(pred, y_val)

print("LOSSES:" + json.dumps(losses))
print(f"FINAL_LOSS:{losses[-1]:.4f}")
print(f"F1:{f1:.4f}")
