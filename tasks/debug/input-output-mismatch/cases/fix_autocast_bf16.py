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


class SmallCNN(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 16, kernel_size=3, padding=1)
        self.conv2 = nn.Conv2d(16, 32, kernel_size=3, padding=1)
        self.pool = nn.MaxPool2d(2)
        self.fc = nn.Linear(8 * 8 * 32, N_CLASSES)

    def forward(self, x):
        x = self.pool(F.relu(self.conv1(x)))
        x = self.pool(F.relu(self.conv2(x)))
        x = torch.flatten(x, 1)
        return self.fc(x)


X_train, y_train = make_data(1200, seed=1)
X_val, y_val = make_data(300, seed=2)
X_train, X_val = X_train.permute(0, 3, 1, 2), X_val.permute(0, 3, 1, 2)

model = SmallCNN()
criterion = nn.CrossEntropyLoss()
optimizer = torch.optim.Adam(model.parameters(), lr=0.002)

EPOCHS = 5
BATCH = 50
losses = []
for epoch in range(EPOCHS):
    model.train()
    perm = torch.randperm(len(X_train))
    epoch_loss = 0.0
    for i in range(0, len(X_train), BATCH):
        idx = perm[i:i + BATCH]
        optimizer.zero_grad()
        with torch.autocast(device_type="cpu", dtype=torch.bfloat16):
            out = model(X_train[idx])
        loss = criterion(out.float(), y_train[idx].argmax(dim=1))
        loss.backward()
        optimizer.step()
        epoch_loss += loss.item() * len(idx)
    losses.append(round(epoch_loss / len(X_train), 4))

model.eval()
correct = 0
with torch.no_grad():
    for i in range(len(X_val)):
        x = X_val[i].unsqueeze(0)
        out = model(x)
        correct += int(out.argmax(dim=1).item() == y_val[i].argmax().item())
val_acc = correct / len(X_val)

print("LOSSES:" + json.dumps(losses))
print(f"FINAL_LOSS:{losses[-1]:.4f}")
print(f"VAL_ACC:{val_acc:.4f}")
