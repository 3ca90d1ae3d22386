"""Data layer of fedsim: image datasets and federated partitioners.

``load_dataset`` gives a uniform (image, label) dataset for any registered
name; ``partition`` splits its labels among clients and ``split_like`` gives
each client a test split with the same label mix.
"""

from fedsim.data.datasets import DATASETS, DatasetError, LabeledImageDataset, load_dataset
from fedsim.data.partition import PARTITIONERS, partition, split_like

__all__ = [
    "DATASETS",
    "DatasetError",
    "LabeledImageDataset",
    "PARTITIONERS",
    "load_dataset",
    "partition",
    "split_like",
]
