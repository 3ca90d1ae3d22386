"""Image corruptions that turn one dataset into a sequence of shifted domains.

The original study's online rounds were i.i.d. draws from one distribution, so nothing
could be forgotten (seed analysis §6.4).  A domain-incremental benchmark needs each round
to see a different input distribution with the same labels; as in CIFAR-10-C (Hendrycks &
Dietterich 2019) we get one by corrupting the images, here with our own numpy/PIL
implementations.  A domain is a corruption and a severity 1..5 (``Domain``, written
``"gaussian_noise:3"``), or ``"clean"``.

Every corruption maps (PIL RGB image, severity, numpy Generator) to a PIL RGB image of
the same size; pixel values x are taken in [0, 1] and clipped back after.  Parameters were
chosen for 32 x 32 images so that severity 1 is mild and 5 still leaves the object
recognisable to a person:

================  ===========================================  =====  =====  =====  =====  =====
corruption        parameter (x in [0, 1])                      1      2      3      4      5
================  ===========================================  =====  =====  =====  =====  =====
clean             none (identity)                              -      -      -      -      -
gaussian_noise    sigma of x + N(0, sigma^2)                   0.04   0.07   0.10   0.14   0.18
shot_noise        photons lam of Poisson(lam x) / lam          300    100    50     25     15
gaussian_blur     sigma in pixels (PIL GaussianBlur radius)    0.5    0.75   1.0    1.25   1.5
contrast          c of (x - mean) c + mean                     0.7    0.5    0.35   0.25   0.15
brightness        added HSV value, min(V + c, 1)               0.1    0.2    0.3    0.4    0.5
jpeg_compression  JPEG quality                                 85     65     45     25     10
pixelate          side kept, BOX down then NEAREST up          0.85   0.7    0.55   0.45   0.35
saturate          HSV saturation factor, min(S a, 1)           1.5    2      3      4      6
haze              haze density d of x (1 - d) + 0.85 d         0.2    0.3    0.4    0.5    0.65
================  ===========================================  =====  =====  =====  =====  =====

Brightness and saturate change V or S with hue fixed, done directly in RGB (channels scale
with V; their distance below V scales with S).  Haze is the atmospheric scattering model
with a light-grey airlight and a density that varies smoothly over the image (a random
4 x 4 field, bilinearly upsampled, between 0.6 d and d).  Noise and haze draw from the
Generator; the others are deterministic.
"""

from __future__ import annotations

import hashlib
import io
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from PIL import Image, ImageFilter

from fedsim.registry import Registry
from fedsim.seeding import derive_seed, rng

CLEAN = "clean"
MAX_SEVERITY = 5

CORRUPTIONS: Registry[Image.Image] = Registry("corruption")


def _level(levels: Sequence[float], severity: int) -> float:
    """The parameter for a severity; a bad severity must not silently index the table."""
    if not 1 <= severity <= MAX_SEVERITY:
        raise ValueError(f"severity must be 1..{MAX_SEVERITY}, got {severity}")
    return levels[severity - 1]


def _to_float(image: Image.Image) -> np.ndarray:
    return np.asarray(image, dtype=np.float64) / 255.0


def _to_image(x: np.ndarray) -> Image.Image:
    return Image.fromarray(np.clip(np.rint(x * 255.0), 0, 255).astype(np.uint8))


@CORRUPTIONS.register(CLEAN)
def clean(image: Image.Image, severity: int, gen: np.random.Generator) -> Image.Image:
    return image.copy()


@CORRUPTIONS.register("gaussian_noise")
def gaussian_noise(image: Image.Image, severity: int, gen: np.random.Generator) -> Image.Image:
    sigma = _level((0.04, 0.07, 0.10, 0.14, 0.18), severity)
    x = _to_float(image)
    return _to_image(x + gen.normal(0.0, sigma, size=x.shape))


@CORRUPTIONS.register("shot_noise")
def shot_noise(image: Image.Image, severity: int, gen: np.random.Generator) -> Image.Image:
    """Photon-counting noise: brighter pixels get more absolute noise, black stays black."""
    lam = _level((300, 100, 50, 25, 15), severity)
    return _to_image(gen.poisson(_to_float(image) * lam) / lam)


@CORRUPTIONS.register("gaussian_blur")
def gaussian_blur(image: Image.Image, severity: int, gen: np.random.Generator) -> Image.Image:
    sigma = _level((0.5, 0.75, 1.0, 1.25, 1.5), severity)
    return image.filter(ImageFilter.GaussianBlur(radius=sigma))


@CORRUPTIONS.register("contrast")
def contrast(image: Image.Image, severity: int, gen: np.random.Generator) -> Image.Image:
    c = _level((0.7, 0.5, 0.35, 0.25, 0.15), severity)
    x = _to_float(image)
    mean = x.mean()
    return _to_image((x - mean) * c + mean)


@CORRUPTIONS.register("brightness")
def brightness(image: Image.Image, severity: int, gen: np.random.Generator) -> Image.Image:
    """Raise HSV value with hue and saturation fixed: every channel scales by V'/V."""
    c = _level((0.1, 0.2, 0.3, 0.4, 0.5), severity)
    x = _to_float(image)
    v = x.max(axis=2, keepdims=True)
    v_new = np.minimum(v + c, 1.0)
    scale = np.divide(v_new, v, out=np.zeros_like(v), where=v > 0)
    # black has no hue or saturation, so it becomes grey at the new value
    return _to_image(np.where(v > 0, x * scale, v_new))


@CORRUPTIONS.register("jpeg_compression")
def jpeg_compression(image: Image.Image, severity: int, gen: np.random.Generator) -> Image.Image:
    quality = int(_level((85, 65, 45, 25, 10), severity))
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=quality)
    buffer.seek(0)
    return Image.open(buffer).convert("RGB")


@CORRUPTIONS.register("pixelate")
def pixelate(image: Image.Image, severity: int, gen: np.random.Generator) -> Image.Image:
    keep = _level((0.85, 0.7, 0.55, 0.45, 0.35), severity)
    w, h = image.size
    small = image.resize((max(1, round(w * keep)), max(1, round(h * keep))), Image.Resampling.BOX)
    return small.resize((w, h), Image.Resampling.NEAREST)


@CORRUPTIONS.register("saturate")
def saturate(image: Image.Image, severity: int, gen: np.random.Generator) -> Image.Image:
    """Scale HSV saturation with hue and value fixed: each channel's gap below V scales."""
    a = _level((1.5, 2.0, 3.0, 4.0, 6.0), severity)
    x = _to_float(image)
    v = x.max(axis=2, keepdims=True)
    spread = v - x.min(axis=2, keepdims=True)  # = S * V
    # cap the factor where S * a would pass 1 (the smallest channel reaching 0)
    factor = np.minimum(a, np.divide(v, spread, out=np.full_like(v, a), where=spread > 0))
    return _to_image(v - factor * (v - x))


@CORRUPTIONS.register("haze")
def haze(image: Image.Image, severity: int, gen: np.random.Generator) -> Image.Image:
    """Fog-like haze: blend towards light grey with a smoothly varying density."""
    d = _level((0.2, 0.3, 0.4, 0.5, 0.65), severity)
    x = _to_float(image)
    field = Image.fromarray(gen.random((4, 4)).astype(np.float32))
    smooth = np.asarray(field.resize(image.size, Image.Resampling.BILINEAR), dtype=np.float64)
    density = d * (0.6 + 0.4 * np.clip(smooth, 0.0, 1.0))[:, :, None]
    return _to_image(x * (1.0 - density) + 0.85 * density)


def _domain_help() -> str:
    names = ", ".join(n for n in CORRUPTIONS if n != CLEAN)
    return f"write {CLEAN!r} or NAME:SEVERITY with NAME one of {names} and SEVERITY 1..{MAX_SEVERITY}"


@dataclass(frozen=True)
class Domain:
    """One benchmark domain: a corruption at a severity (0 for clean, else 1..5)."""

    name: str
    severity: int = 0

    def __post_init__(self) -> None:
        if self.name not in CORRUPTIONS:
            raise ValueError(f"unknown corruption {self.name!r}; {_domain_help()}")
        if self.name == CLEAN:
            if self.severity != 0:
                raise ValueError(f"{CLEAN!r} takes no severity (0), got {self.severity!r}")
        elif isinstance(self.severity, bool) or not isinstance(self.severity, int) \
                or not 1 <= self.severity <= MAX_SEVERITY:
            raise ValueError(f"severity of {self.name!r} must be an int 1..{MAX_SEVERITY}, "
                             f"got {self.severity!r}")

    @property
    def label(self) -> str:
        return CLEAN if self.name == CLEAN else f"{self.name}:{self.severity}"


def parse_domain(text: str) -> Domain:
    """``"clean"`` or ``"NAME:SEVERITY"`` (as in scenario files) to a Domain."""
    name, sep, level = (part.strip() for part in text.strip().partition(":"))
    if name not in CORRUPTIONS:
        raise ValueError(f"unknown corruption {name!r} in domain {text!r}; {_domain_help()}")
    if name == CLEAN:
        if sep:
            raise ValueError(f"domain {text!r}: {CLEAN!r} takes no severity; {_domain_help()}")
        return Domain(CLEAN)
    if not sep:
        raise ValueError(f"domain {text!r} has no severity; {_domain_help()}")
    try:
        severity = int(level)
    except ValueError:
        raise ValueError(f"domain {text!r}: severity {level!r} is not an integer; {_domain_help()}") from None
    if not 1 <= severity <= MAX_SEVERITY:
        raise ValueError(f"domain {text!r}: severity {severity} is out of range; {_domain_help()}")
    return Domain(name, severity)


def corrupt(image: Image.Image, domain: Domain, gen: np.random.Generator) -> Image.Image:
    return CORRUPTIONS.get(domain.name)(image, domain.severity, gen)


class CorruptTransform:
    """Dataset transform: corrupt a PIL image for ``domain``, then apply ``then``.

    The noise of an image depends only on (seed, domain, the image's pixels), never on
    which DataLoader worker sees it or in what order, so a domain's images are the same in
    every epoch, process and run.  A plain class (no closures), so it pickles into workers.
    """

    def __init__(self, domain: Domain | str, seed: int,
                 then: Callable[[Image.Image], Any] | None = None) -> None:
        self.domain = domain if isinstance(domain, Domain) else parse_domain(domain)
        self.seed = int(seed)
        self.then = then

    def image_rng(self, image: Image.Image) -> np.random.Generator:
        """A Generator keyed by the image's content (128-bit blake2b of size, mode and pixels)."""
        digest = hashlib.blake2b(f"{image.size}{image.mode}".encode(), digest_size=16)
        digest.update(image.tobytes())
        stream = derive_seed(self.seed, "corruption", self.domain.label)
        return np.random.default_rng(np.random.SeedSequence([stream, int.from_bytes(digest.digest(), "little")]))

    def __call__(self, image: Image.Image) -> Any:
        image = image if image.mode == "RGB" else image.convert("RGB")  # e.g. greyscale datasets
        out = corrupt(image, self.domain, self.image_rng(image))
        return out if self.then is None else self.then(out)

    def __repr__(self) -> str:
        return f"CorruptTransform({self.domain.label!r}, seed={self.seed}, then={self.then!r})"


def default_schedule(n_rounds: int, seed: int) -> list[Domain]:
    """The domain of each online round: clean first, then corruptions of rising severity.

    Round 0 is clean (the reference domain).  Rounds 1..n-1 cycle through the corruption
    types in an order shuffled by ``seed`` (so consecutive rounds never repeat a type), and
    the severity rises with the round: round r gets 1 + floor(5 (r - 1) / (n - 1)), so the
    later rounds are split evenly over severities 1..5 (all five once n >= 6).
    """
    if isinstance(n_rounds, bool) or not isinstance(n_rounds, int) or n_rounds < 1:
        raise ValueError(f"n_rounds must be an int >= 1, got {n_rounds!r}")
    kinds = [name for name in CORRUPTIONS if name != CLEAN]
    order = [kinds[i] for i in rng(seed, "online", "corruption-schedule").permutation(len(kinds))]
    later = n_rounds - 1
    return [Domain(CLEAN)] + [Domain(order[r % len(order)], 1 + (r * MAX_SEVERITY) // later)
                              for r in range(later)]


def round_domains(setting: str, n_rounds: int, domains: list[str], seed: int) -> list[Domain]:
    """The image domain of each online round: all clean in the ``iid`` setting; in
    ``domain_shift`` the listed ``domains`` or, when none are listed, :func:`default_schedule`."""
    if setting == "iid":
        return [parse_domain(CLEAN)] * n_rounds
    if domains:
        return [parse_domain(d) for d in domains]
    return default_schedule(n_rounds, seed)


def distinct_domains(schedule: list[Domain]) -> list[Domain]:
    """The distinct domains of a schedule, in first-appearance order (the test domains)."""
    seen: dict[str, Domain] = {}
    for d in schedule:
        seen.setdefault(d.label, d)
    return list(seen.values())
