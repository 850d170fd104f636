"""Data loading for exp-1: CIFAR-10 with a held-out validation split."""

import torch
from torch.utils.data import DataLoader, random_split
import torchvision
import torchvision.transforms as T

CIFAR10_MEAN = (0.4914, 0.4822, 0.4465)
CIFAR10_STD = (0.2470, 0.2435, 0.2616)


def build_transforms(train):
    """Standard CIFAR-10 augmentation for training, normalisation only for evaluation."""
    steps = []
    if train:
        steps += [T.RandomCrop(32, padding=4), T.RandomHorizontalFlip()]
    steps += [T.ToTensor(), T.Normalize(CIFAR10_MEAN, CIFAR10_STD)]
    return T.Compose(steps)


def get_dataloaders(cfg, seed):
    """Returns (train, val, test) loaders; the validation split is carved from the training set."""
    data_cfg = cfg["dataset"]
    root = data_cfg.get("root", "./data")  # DATASET_PLACEHOLDER: real path on the cluster
    train_full = torchvision.datasets.CIFAR10(
        root=root, train=True, download=True, transform=build_transforms(train=True)
    )
    test_set = torchvision.datasets.CIFAR10(
        root=root, train=False, download=True, transform=build_transforms(train=False)
    )
    val_size = int(data_cfg["val_size"])
    generator = torch.Generator().manual_seed(seed)
    train_set, val_set = random_split(
        train_full, [len(train_full) - val_size, val_size], generator=generator
    )
    batch_size = int(data_cfg["batch_size"])
    workers = int(data_cfg.get("num_workers", 0))
    train_loader = DataLoader(
        train_set,
        batch_size=batch_size,
        shuffle=True,
        num_workers=workers,
        generator=torch.Generator().manual_seed(seed),
    )
    val_loader = DataLoader(val_set, batch_size=batch_size, shuffle=False, num_workers=workers)
    test_loader = DataLoader(test_set, batch_size=batch_size, shuffle=False, num_workers=workers)
    return train_loader, val_loader, test_loader
