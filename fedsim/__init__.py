"""fedsim: simulate privacy-preserving collaboration on image embeddings with Flower."""

__version__ = "0.1.0"
