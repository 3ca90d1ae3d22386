"""Corruption domains: contract, severity trend, per-image determinism, parsing, schedule."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
from PIL import Image

from fedsim.online.corruptions import (CLEAN, CORRUPTIONS, CorruptTransform, Domain, corrupt,
                                       default_schedule, gaussian_noise, parse_domain)

KINDS = [name for name in CORRUPTIONS if name != CLEAN]
RANDOM_KINDS = ["gaussian_noise", "shot_noise", "haze"]


def make_images(n: int = 4, size: tuple[int, int] = (32, 32), seed: int = 0) -> list[Image.Image]:
    """Photo-like test images: smooth colour gradients with a few flat random blocks."""
    gen = np.random.default_rng(seed)
    w, h = size
    yy, xx = np.mgrid[0:h, 0:w]
    xx, yy = xx / (w - 1), yy / (h - 1)
    images = []
    for k in range(n):
        x = np.roll(np.stack([xx, yy, (xx + yy) / 2], axis=-1), k, axis=2) * 0.8 + 0.1
        for _ in range(4):
            i, j = gen.integers(0, min(w, h) - 8, size=2)
            x[i:i + 8, j:j + 8] = gen.random(3)
        images.append(Image.fromarray(np.rint(x * 255).astype(np.uint8)))
    return images


IMAGES = make_images()


def distance(a: Image.Image, b: Image.Image) -> float:
    return float(np.abs(np.asarray(a, dtype=float) - np.asarray(b, dtype=float)).mean())


def to_array(image: Image.Image) -> np.ndarray:
    return np.asarray(image)


def test_registry_has_the_benchmark_corruptions():
    for name in (CLEAN, "gaussian_noise", "shot_noise", "gaussian_blur", "contrast", "brightness",
                 "jpeg_compression", "pixelate", "saturate", "haze"):
        assert name in CORRUPTIONS


@pytest.mark.parametrize("name", KINDS)
@pytest.mark.parametrize("severity", range(1, 6))
def test_contract_same_size_rgb_and_changed(name, severity):
    images = IMAGES[:2] + make_images(1, size=(40, 24), seed=1)  # also a non-square one
    for image in images:
        out = corrupt(image, Domain(name, severity), np.random.default_rng(0))
        assert isinstance(out, Image.Image)
        assert out.mode == "RGB" and out.size == image.size
        assert distance(out, image) > 0


def test_clean_is_identity():
    image = IMAGES[0]
    out = corrupt(image, Domain(CLEAN), np.random.default_rng(0))
    assert out is not image and out.tobytes() == image.tobytes()


@pytest.mark.parametrize("name", KINDS)
def test_stronger_severity_moves_further_from_clean(name):
    mean_distance = [
        np.mean([distance(corrupt(im, Domain(name, s), np.random.default_rng(7)), im) for im in IMAGES])
        for s in range(1, 6)
    ]
    assert all(np.diff(mean_distance) > 0), mean_distance


def test_bad_severity_is_refused_by_the_corruption_itself():
    with pytest.raises(ValueError, match="severity must be 1..5"):
        gaussian_noise(IMAGES[0], 0, np.random.default_rng(0))


@pytest.mark.parametrize("name", KINDS)
def test_same_image_and_seed_give_identical_bytes_in_any_order(name):
    domain = Domain(name, 3)
    first = [CorruptTransform(domain, seed=5)(im).tobytes() for im in IMAGES]
    transform = CorruptTransform(domain, seed=5)
    reversed_order = [transform(im).tobytes() for im in reversed(IMAGES)][::-1]
    assert first == reversed_order


@pytest.mark.parametrize("name", RANDOM_KINDS)
def test_seed_changes_the_noise(name):
    domain = Domain(name, 3)
    image = IMAGES[0]
    assert CorruptTransform(domain, seed=5)(image).tobytes() != CorruptTransform(domain, seed=6)(image).tobytes()


@pytest.mark.parametrize("name", [k for k in KINDS if k not in RANDOM_KINDS])
def test_deterministic_corruptions_ignore_the_seed(name):
    domain = Domain(name, 3)
    image = IMAGES[0]
    assert CorruptTransform(domain, seed=5)(image).tobytes() == CorruptTransform(domain, seed=6)(image).tobytes()


def test_noise_is_keyed_by_image_content():
    # two grey images differing in one pixel get unrelated noise, not the same pattern
    grey = np.full((32, 32, 3), 128, dtype=np.uint8)
    other = grey.copy()
    other[0, 0] = 129
    transform = CorruptTransform(Domain("gaussian_noise", 2), seed=5)
    a = np.asarray(transform(Image.fromarray(grey)), dtype=int) - grey
    b = np.asarray(transform(Image.fromarray(other)), dtype=int) - other
    assert np.mean(a[1:] == b[1:]) < 0.5


def test_transform_pickles_and_applies_then():
    transform = CorruptTransform("shot_noise:2", seed=11, then=to_array)
    clone = pickle.loads(pickle.dumps(transform))
    assert clone.domain == Domain("shot_noise", 2) and clone.seed == 11
    out = clone(IMAGES[1])
    assert isinstance(out, np.ndarray) and out.shape == (32, 32, 3)
    np.testing.assert_array_equal(out, transform(IMAGES[1]))
    plain = pickle.loads(pickle.dumps(CorruptTransform(Domain(CLEAN), seed=0)))
    assert plain(IMAGES[0]).tobytes() == IMAGES[0].tobytes()


def test_transform_converts_greyscale_to_rgb():
    out = CorruptTransform("contrast:2", seed=0)(IMAGES[0].convert("L"))
    assert out.mode == "RGB" and out.size == (32, 32)


def test_parse_domain_round_trips_labels():
    assert parse_domain("clean") == Domain(CLEAN, 0)
    assert parse_domain(" contrast : 2 ") == Domain("contrast", 2)
    for name in KINDS:
        for severity in range(1, 6):
            domain = Domain(name, severity)
            assert domain.label == f"{name}:{severity}"
            assert parse_domain(domain.label) == domain
    assert Domain(CLEAN).label == "clean"


@pytest.mark.parametrize("text, match", [
    ("fog:2", r"unknown corruption 'fog'.*gaussian_noise.*SEVERITY 1\.\.5"),
    ("gaussian_noise", r"has no severity.*SEVERITY 1\.\.5"),
    ("gaussian_noise:0", r"severity 0 is out of range.*1\.\.5"),
    ("pixelate:6", r"severity 6 is out of range"),
    ("pixelate:x", r"severity 'x' is not an integer"),
    ("clean:1", r"'clean' takes no severity"),
])
def test_parse_domain_errors(text, match):
    with pytest.raises(ValueError, match=match):
        parse_domain(text)


@pytest.mark.parametrize("name, severity", [("contrast", 0), ("contrast", 2.0), ("contrast", True),
                                            (CLEAN, 2), ("blur", 1)])
def test_domain_validates(name, severity):
    with pytest.raises(ValueError):
        Domain(name, severity)


def test_default_schedule():
    schedule = default_schedule(10, seed=3)
    assert len(schedule) == 10 and schedule[0] == Domain(CLEAN)
    later = schedule[1:]
    severities = [d.severity for d in later]
    assert severities == sorted(severities) and severities[0] == 1 and severities[-1] == 5
    assert set(severities) == {1, 2, 3, 4, 5}
    assert {d.name for d in later} == set(KINDS)  # 9 later rounds, 9 types: each once
    assert all(a.name != b.name for a, b in zip(later, later[1:]))
    assert default_schedule(10, seed=3) == schedule
    assert any([d.name for d in default_schedule(10, seed=s)] != [d.name for d in schedule] for s in range(4, 8))
    long = default_schedule(25, seed=3)
    assert all(a.name != b.name for a, b in zip(long[1:], long[2:]))
    assert default_schedule(1, seed=3) == [Domain(CLEAN)]
    assert default_schedule(2, seed=3)[1].severity == 1
    with pytest.raises(ValueError, match="n_rounds"):
        default_schedule(0, seed=3)
