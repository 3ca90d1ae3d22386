"""Data layer of fedsim: image datasets and their division among federated clients.

``load_dataset`` gives a uniform (image, label) dataset for any registered name;
``client_splits`` gives every client's training and query indices (computed with Flower
Datasets' partitioners in ``fedsim.data.partition``, which is imported only when a split
is not stored yet, since it pulls in ``datasets``, pyarrow and pandas).
"""

from fedsim.data.datasets import DATASETS, DatasetError, LabeledImageDataset, load_dataset
from fedsim.data.splits import client_splits

__all__ = [
    "DATASETS",
    "DatasetError",
    "LabeledImageDataset",
    "client_splits",
    "load_dataset",
]
