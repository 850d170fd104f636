"""Small CNN classifying 32x32 RGB images into 10 classes.

The data loader yields images as [N, H, W, C] floats and one-hot labels.
Reports per-epoch loss, final loss and validation accuracy, where validation
runs one image at a time (as the deployed model will see them).
"""
import json

import torch
import torch.nn as nn
import torch.nn.functional as F

torch.manual_seed(0)
torch.set_num_threads(1)

N_CLASSES = 10
IMG = 32


def make_data(n, seed):
    """Images [n, 32, 32, 3] (HWC, float) and one-hot labels [n, 10] (int64)."""
    g = torch.Generator().manual_seed(seed)
    protos = torch.randn(N_CLASSES, 3, 8, 8, generator=torch.Generator().manual_seed(99))
    protos = F.interpolate(protos, size=(IMG, IMG), mode="bilinear", align_corners=False)
    labels = torch.randint(0, N_CLASSES, (n,), generator=g)
    images = protos[labels] + 5.0 * torch.randn(n, 3, IMG, IMG, generator=g)
    images = images.permute(0, 2, 3, 1).contiguous()   # stored as HWC
    return images, F.one_hot(labels, N_CLASSES)


class PooledCNN(nn.Module):
    def __init__(self):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, 16, kernel_size=3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(16, 32, kernel_size=3, padding=1), nn.ReLU(),
            nn.AdaptiveMaxPool2d((8, 8)),               # any input size -> 8x8, as the fc expects
        )
        self.fc = nn.Linear(8 * 8 * 32, N_CLASSES)

    def forward(self, x):
        return self.fc(self.features(x).flatten(1))


X_train, y_train = make_data(1200, seed=1)
X_val, y_val = make_data(300, seed=2)
X_train = torch.einsum("nhwc->nchw", X_train)
X_val = torch.einsum("nhwc->nchw", X_val)
y_train = torch.max(y_train, dim=1).indices

model = PooledCNN()
optimizer = torch.optim.Adam(model.parameters(), lr=0.002)
losses = []
for epoch in range(5):
    model.train()
    epoch_loss = 0.0
    for idx in torch.randperm(len(X_train)).split(50):
        optimizer.zero_grad()
        loss = F.nll_loss(F.log_softmax(model(X_train[idx]), dim=1), y_train[idx])
        loss.backward()
        optimizer.step()
        epoch_loss += loss.item() * len(idx)
    losses.append(round(epoch_loss / len(X_train), 4))

model.eval()
hits = 0
with torch.no_grad():
    for image, label in zip(X_val, y_val):
        hits += int(model(image[None]).argmax() == label.argmax())
val_acc = hits / len(X_val)

print("LOSSES:" + json.dumps(losses))
print(f"FINAL_LOSS:{losses[-1]:.4f}")
print(f"VAL_ACC:{val_acc:.4f}")
