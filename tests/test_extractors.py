"""Extractor zoo basics: shapes, seeded initialisation, weights handling."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from fedsim import extractors
from fedsim.data import load_dataset
from fedsim.extractors.extract import embed_views


def test_compact_cnn_shapes_and_size():
    ex = extractors.create("compact_cnn", num_classes=10, seed=0)
    x = torch.randn(2, 3, 32, 32)
    assert ex.model.embed(x).shape == (2, ex.embedding_dim) == (2, 256)
    assert ex.model(x).shape == (2, 10)
    n_params = sum(p.numel() for p in ex.model.parameters())
    assert 1.5e6 < n_params < 2.5e6


def test_random_init_is_seeded():
    a = extractors.create("compact_cnn", seed=1).model.state_dict()
    b = extractors.create("compact_cnn", seed=1).model.state_dict()
    c = extractors.create("compact_cnn", seed=2).model.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not all(torch.equal(a[k], c[k]) for k in a)


def test_checkpoint_round_trip(tmp_path):
    ex = extractors.create("compact_cnn", seed=3)
    path = tmp_path / "w.pt"
    torch.save({"model": ex.model.state_dict()}, path)
    again = extractors.create("compact_cnn", weights=str(path))
    x = torch.randn(1, 3, 32, 32)
    with torch.no_grad():
        assert torch.allclose(ex.model.embed(x), again.model.embed(x))
    assert len(again.weights_id) == 16


def test_missing_weights_file_fails_fast():
    with pytest.raises(ValueError, match="no such file"):
        extractors.create("compact_cnn", weights="/nope/weights.pt")


def test_extract_is_deterministic_and_ordered():
    ds = load_dataset("cifar10-mini", None, "test")
    ex = extractors.create("compact_cnn", seed=0)
    ds.transform = ex.transform()
    idx = np.array([5, 1, 9])
    a = extractors.extract(ex, ds, idx, batch_size=2, progress=False)
    b = extractors.extract(ex, ds, idx[::-1], batch_size=3, progress=False)
    assert a.shape == (3, 256) and a.dtype == np.float32
    np.testing.assert_allclose(a, b[::-1], rtol=1e-5, atol=1e-5)


def test_flip_tta_embeddings_are_the_mean_of_both_views_and_mirror_invariant():
    """``tta="flip"`` embeds an image and its mirror image to the same vector, the mean of
    the two plain embeddings; an unknown mode is refused before any extraction."""
    ds = load_dataset("cifar10-mini", None, "test")
    ex = extractors.create("compact_cnn", weights="default")
    ds.transform = ex.transform()
    idx = np.array([3, 8])
    plain = extractors.extract(ex, ds, idx, progress=False, amp="off")
    flip = extractors.extract(ex, ds, idx, progress=False, amp="off", tta="flip")
    x = torch.stack([ds[i][0] for i in idx])
    with torch.inference_mode():
        mirrored = ex.model.eval().embed(x.flip(3)).numpy()
        mirror_flip = embed_views(ex.model, x.flip(3), "flip").numpy()
    np.testing.assert_allclose(flip, 0.5 * (plain + mirrored), rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(mirror_flip, flip, rtol=1e-4, atol=1e-4)
    assert not np.allclose(plain, mirrored, atol=1e-3)  # the plain embedding is not mirror-invariant
    with pytest.raises(ValueError, match="tta must be one of none, flip"):
        extractors.extract(ex, ds, idx, progress=False, tta="multicrop")


def test_shipped_default_weights_load_as_fp32():
    ex = extractors.create("compact_cnn", weights="default", num_classes=100)
    assert ex.model.head.out_features == 10  # the head of the CIFAR-10 checkpoint is kept
    assert all(p.dtype == torch.float32 for p in ex.model.parameters())
    assert len(ex.weights_id) == 16 and not ex.weights_id.startswith("random")


def test_default_weights_only_for_shipped_models():
    with pytest.raises(ValueError, match="has no shipped weights"):
        extractors.validate("simple_convnet", {"weights": "default"})
