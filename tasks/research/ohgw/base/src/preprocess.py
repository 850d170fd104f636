"""Data loading (dataset specific: filled in by the derivation)."""

import torch
from torch.utils.data import DataLoader, random_split



def get_dataloaders(cfg, seed):
    """Returns (train, val, test) loaders; the validation split is carved from the training set."""
    # DATASET_PLACEHOLDER: load the experiment's dataset (with its transforms) and build the
    # train / validation / test DataLoaders from cfg["dataset"].
    raise NotImplementedError("DATASET_PLACEHOLDER")
