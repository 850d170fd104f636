"""Dataset loading & preprocessing: CIFAR-10 from the Hugging Face hub; the test stream is
corrupted with Gaussian noise the way CIFAR-10-C does it."""
from __future__ import annotations

import random
from typing import Tuple

import numpy as np
import torch
from datasets import load_dataset
from torch.utils.data import DataLoader, Dataset
from torchvision import transforms

__all__ = ["get_dataloaders", "set_seed"]

CIFAR10_MEAN = (0.4914, 0.4822, 0.4465)
CIFAR10_STD = (0.2470, 0.2435, 0.2616)


# ---------------------------------------------------------------- utilities

def set_seed(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    torch.cuda.manual_seed_all(seed)


class GaussianNoise:
    """CIFAR-10-C Gaussian noise; `severity` 1-5 picks the standard deviation."""

    SIGMAS = (0.04, 0.06, 0.08, 0.09, 0.10)

    def __init__(self, severity: int):
        self.sigma = self.SIGMAS[severity - 1]

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return (x + torch.randn_like(x) * self.sigma).clamp(0.0, 1.0)


# ----------------------------------------------------------- HF wrappers ---

class HFImageDataset(Dataset):
    def __init__(self, hf_ds, transform, image_key: str = "img", label_key: str = "label"):
        self.ds = hf_ds
        self.transform = transform
        self.image_key = image_key
        self.label_key = label_key

    def __len__(self):
        return len(self.ds)

    def __getitem__(self, idx):
        item = self.ds[int(idx)]
        image = item[self.image_key].convert("RGB")
        return self.transform(image), int(item[self.label_key])


# ------------------------------------------------------ public interface ---

def get_dataloaders(dataset_cfg: dict, training_cfg: dict) -> Tuple[DataLoader, DataLoader, int]:
    """Clean training loader (source model) and corrupted test loader (adaptation stream)."""
    name = dataset_cfg["name"]
    train_split = load_dataset(name, split=dataset_cfg.get("train_split", "train"))
    test_split = load_dataset(name, split=dataset_cfg.get("test_split", "test"))
    num_classes = train_split.features["label"].num_classes

    train_tf = transforms.Compose([
        transforms.RandomCrop(32, padding=4),
        transforms.RandomHorizontalFlip(),
        transforms.ToTensor(),
        transforms.Normalize(CIFAR10_MEAN, CIFAR10_STD),
    ])
    test_tf = transforms.Compose([
        transforms.ToTensor(),
        GaussianNoise(dataset_cfg.get("severity", 5)),
        transforms.Normalize(CIFAR10_MEAN, CIFAR10_STD),
    ])

    bs = training_cfg.get("batch_size", 128)
    nw = training_cfg.get("num_workers", 0)
    train_loader = DataLoader(HFImageDataset(train_split, train_tf), batch_size=bs,
                              shuffle=True, num_workers=nw, drop_last=True)
    test_loader = DataLoader(HFImageDataset(test_split, test_tf), batch_size=bs,
                             shuffle=False, num_workers=nw)
    return train_loader, test_loader, num_classes
