"""Training zoo CNNs on an image classification split (``fedsim train-extractor``).

Three recipes, any value overridable:

* ``study`` reproduces the original study's best recipe (seed-analysis §1.3, code
  ``_13hj``): random crop (padding 4) + horizontal flip, Adam lr 1e-3, weight decay 1e-4,
  gradient value clipping 0.5, batch 64, 50 epochs, no schedule.
* ``fast`` is a modern fast-CIFAR recipe: SGD + Nesterov, one-cycle learning rate stepped
  per batch, label smoothing, reflect-padded translation + flip, batch 512, flip
  test-time augmentation.
* ``airbench`` follows the fast-training ideas of Keller Jordan's airbench (``94% on
  CIFAR-10 in 3.29 seconds on a single GPU``, 2024), re-implemented for ``compact_cnn``:
  a frozen 2x2 patch-whitening stem computed from the training images, identity (dirac)
  initialised convolutions, BatchNorm with frozen unit scales (momentum 0.4, eps 1e-12),
  logits scaled by 1/9, batch 1024, SGD + Nesterov (momentum 0.85) with lr 1.5 and
  weight decay 1.33e-3 on every parameter (the BN shifts at 64x the lr and 1/64 the
  decay), lr warm-up 0.2 -> 1 over 23% of the steps then linear decay to 0.07, label
  smoothing 0.2, reflect-pad-2 translation, alternating flips (each image's mirror image
  the next epoch), the whitening bias frozen after 3 epochs, lookahead (every 5 steps the
  weights are pulled to an exponential moving average whose decay rises to 0.77; the
  average is the final model), and multi-crop TTA (flip x one-pixel translations).

Unlike the study, the validation split is held out WITHOUT augmentation, schedules are
stepped per batch, checkpoints carry the config and a content hash, and an interrupted
run resumes from its last epoch (``resume=True``).  Mixed precision is bf16 autocast on
CUDA and on CPUs with AMX/AVX512-BF16, with channels_last memory layout.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn
from tqdm.auto import tqdm

from fedsim.device import best_device, bf16_autocast_ok
from fedsim.extractors.checkpoint import load_checkpoint, save_checkpoint, state_hash
from fedsim.extractors.images import cutout, load_uint8, normalize, random_crop_flip, stratified_split

log = logging.getLogger(__name__)

RECIPES: dict[str, dict[str, Any]] = {
    "study": dict(epochs=50, batch_size=64, optimizer="adam", lr=1e-3, weight_decay=1e-4, schedule="none",
                  label_smoothing=0.0, grad_clip_value=0.5, crop_padding=4, pad_mode="constant", tta=False),
    "fast": dict(epochs=20, batch_size=512, optimizer="sgd", lr=0.2, momentum=0.9, nesterov=True,
                 weight_decay=5e-4, schedule="onecycle", warmup_fraction=0.2, label_smoothing=0.2,
                 grad_clip_value=None, crop_padding=2, pad_mode="reflect", tta=True),
    "airbench": dict(epochs=24, batch_size=1024, optimizer="sgd", lr=1.5, momentum=0.85, nesterov=True,
                     weight_decay=0.0153 / 11.5, decay_biases=True, bias_lr_scale=64.0, schedule="onecycle",
                     warmup_fraction=0.23, warmup_start=0.2, final_lr_factor=0.07, label_smoothing=0.2,
                     grad_clip_value=None, crop_padding=2, pad_mode="reflect", flip_mode="alternate", tta=True,
                     tta_translate=True, stem="whiten", dirac_init=True, bn_weight=False, bn_eps=1e-12,
                     bn_momentum=0.4, logit_scale=1 / 9, whiten_bias_epochs=3, lookahead_every=5),
}

#: TrainConfig fields that are CompactNet constructor options (``compact_cnn`` only), and
#: their defaults -- the architecture of the first shipped weights.
MODEL_OPTIONS = {"stem": "conv", "dirac_init": False, "bn_weight": True, "bn_eps": 1e-5, "bn_momentum": 0.1,
                 "logit_scale": 0.125}


@dataclass
class TrainConfig:
    model: str = "compact_cnn"
    dataset: str = "cifar10"
    root: str = ""
    download: bool = False
    recipe: str = "study"
    epochs: int = 50
    batch_size: int = 64
    optimizer: str = "adam"  # adam | sgd
    lr: float = 1e-3
    momentum: float = 0.9
    nesterov: bool = False
    weight_decay: float = 1e-4
    decay_biases: bool = False  # also decay BN and bias parameters (default: only weights with ndim > 1)
    bias_lr_scale: float = 1.0  # lr multiplier of the BN parameters; their decay is divided by it
    schedule: str = "none"  # none | onecycle | cosine (stepped per batch)
    warmup_fraction: float = 0.2
    warmup_start: float = 0.1  # lr factor at step 0 of the warm-up
    final_lr_factor: float = 0.0  # onecycle: lr factor at the last step
    label_smoothing: float = 0.0
    grad_clip_value: float | None = 0.5
    grad_clip_norm: float | None = None
    crop_padding: int = 4
    pad_mode: str = "constant"  # constant | reflect
    flip: bool = True
    flip_mode: str = "random"  # random (per image and epoch) | alternate (random at first, then mirrored every other epoch)
    cutout: int = 0  # side of the square blanked per training image (0 = off)
    val_size: int = 5000
    train_subset: int = 0  # train on the first N images of the (shuffled) training split only (0 = all)
    tta: bool = False  # flip TTA in the final validation figures
    tta_translate: bool = False  # also one-pixel translations (multi-crop TTA, 6 views)
    # compact_cnn options (MODEL_OPTIONS; stored in checkpoints to rebuild the model)
    stem: str = "conv"  # conv | whiten (frozen 2x2 patch whitening computed from training images)
    dirac_init: bool = False  # identity-initialised 3x3 convolutions
    bn_weight: bool = True  # False: BN scales frozen at 1, only the shifts learn
    bn_eps: float = 1e-5
    bn_momentum: float = 0.1
    logit_scale: float = 0.125
    whiten_bias_epochs: int = 0  # stem whiten: epochs its bias learns before it is frozen (0 = never frozen)
    lookahead_every: int = 0  # pull weights to their EMA every N steps (0 = off); the EMA is the final model
    amp: str = "auto"  # auto | bf16 | off
    device: str = "auto"
    seed: int = 0
    num_workers: int = 2

    @classmethod
    def from_recipe(cls, recipe: str = "study", **overrides: Any) -> "TrainConfig":
        if recipe not in RECIPES:
            raise ValueError(f"recipe must be one of {', '.join(RECIPES)}, got {recipe!r}")
        cfg = cls(recipe=recipe, **{**RECIPES[recipe], **{k: v for k, v in overrides.items() if v is not None}})
        cfg.check()
        return cfg

    def check(self) -> None:
        rules = [
            (self.epochs >= 1, "epochs must be >= 1"),
            (self.batch_size >= 1, "batch_size must be >= 1"),
            (self.optimizer in ("adam", "sgd"), "optimizer must be adam or sgd"),
            (self.lr > 0, "lr must be > 0"),
            (self.weight_decay >= 0, "weight_decay must be >= 0"),
            (self.schedule in ("none", "onecycle", "cosine"), "schedule must be none, onecycle or cosine"),
            (0 <= self.warmup_fraction < 1, "warmup_fraction must be in [0, 1)"),
            (0 <= self.label_smoothing < 1, "label_smoothing must be in [0, 1)"),
            (self.crop_padding >= 0, "crop_padding must be >= 0"),
            (self.cutout >= 0, "cutout must be >= 0"),
            (self.pad_mode in ("constant", "reflect"), "pad_mode must be constant or reflect"),
            (self.val_size >= 0, "val_size must be >= 0"),
            (self.amp in ("auto", "bf16", "off"), "amp must be auto, bf16 or off"),
            (self.bias_lr_scale > 0, "bias_lr_scale must be > 0"),
            (0 < self.warmup_start <= 1, "warmup_start must be in (0, 1]"),
            (0 <= self.final_lr_factor <= 1, "final_lr_factor must be in [0, 1]"),
            (self.flip_mode in ("random", "alternate"), "flip_mode must be random or alternate"),
            (self.train_subset >= 0, "train_subset must be >= 0"),
            (self.stem in ("conv", "whiten"), "stem must be conv or whiten"),
            (self.bn_eps > 0 and 0 <= self.bn_momentum <= 1, "bn_eps must be > 0 and bn_momentum in [0, 1]"),
            (self.logit_scale > 0, "logit_scale must be > 0"),
            (self.whiten_bias_epochs >= 0, "whiten_bias_epochs must be >= 0"),
            (self.lookahead_every >= 0, "lookahead_every must be >= 0"),
            (self.model == "compact_cnn" or all(getattr(self, k) == v for k, v in MODEL_OPTIONS.items()),
             f"{', '.join(MODEL_OPTIONS)} apply to compact_cnn only"),
        ]
        for ok, message in rules:
            if not ok:
                raise ValueError(message)

    def model_options(self) -> dict[str, Any]:
        """Constructor options of the model (``compact_cnn``: CompactNet's), as stored in checkpoints."""
        if self.model != "compact_cnn":
            return {}
        opts = {k: getattr(self, k) for k in MODEL_OPTIONS}
        opts["dirac"] = opts.pop("dirac_init")
        return opts


def _optimizer(cfg: TrainConfig, model: nn.Module) -> torch.optim.Optimizer:
    """Three parameter groups (empty ones dropped), each with its ``lr_scale``: weights
    (ndim > 1, decayed), BatchNorm parameters (lr x ``bias_lr_scale``) and other biases.
    By default BN parameters and biases are not decayed (standard; decaying BN scales
    hurts); with ``decay_biases`` they are, the BN ones with decay / ``bias_lr_scale`` so
    that lr x decay -- the shrinkage per step -- is the same for every parameter."""
    norm_ids = {id(p) for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)
                for p in m.parameters()}
    trainable = [p for p in model.parameters() if p.requires_grad]
    weights = [p for p in trainable if p.ndim > 1 and id(p) not in norm_ids]
    norm = [p for p in trainable if id(p) in norm_ids]
    rest = [p for p in trainable if p.ndim <= 1 and id(p) not in norm_ids]
    bias_wd = cfg.weight_decay if cfg.decay_biases else 0.0
    groups = [
        {"params": weights, "weight_decay": cfg.weight_decay, "lr_scale": 1.0},
        {"params": norm, "weight_decay": bias_wd / cfg.bias_lr_scale, "lr_scale": cfg.bias_lr_scale},
        {"params": rest, "weight_decay": bias_wd, "lr_scale": 1.0},
    ]
    groups = [g for g in groups if g["params"]]
    if cfg.optimizer == "adam":
        return torch.optim.Adam(groups, lr=cfg.lr)
    return torch.optim.SGD(groups, lr=cfg.lr, momentum=cfg.momentum, nesterov=cfg.nesterov)


def _lr_factor(cfg: TrainConfig, step: int, total: int) -> float:
    """Multiplier of the base lr at a batch step: warm-up from ``warmup_start`` to 1, then
    linear decay to ``final_lr_factor`` (onecycle) or cosine decay to 0."""
    if cfg.schedule == "none":
        return 1.0
    warm = int(cfg.warmup_fraction * total)
    if step < warm:
        return cfg.warmup_start + (1 - cfg.warmup_start) * step / max(1, warm)
    progress = (step - warm) / max(1, total - warm)
    if cfg.schedule == "onecycle":
        return max(0.0, 1.0 - progress * (1.0 - cfg.final_lr_factor))
    return 0.5 * (1 + math.cos(math.pi * progress))


class Lookahead:
    """Lookahead with an EMA (airbench/hlb-cifar10 style): every ``every`` steps the EMA of
    the floating-point state (weights and BN statistics) moves toward the live model by
    ``1 - decay`` and the live model is reset to it.  The decay follows
    ``0.95**every * (step / total)**3`` -- no effect early, strong averaging near the end --
    and at the last step the live model becomes the EMA."""

    def __init__(self, model: nn.Module, every: int, total_steps: int) -> None:
        self.every, self.total = every, total_steps
        self.state = {k: v.detach().clone() for k, v in model.state_dict().items() if v.is_floating_point()}

    def step(self, model: nn.Module, step: int) -> None:
        """Call after optimiser step number ``step`` (1-based)."""
        if step >= self.total:
            self._pull(model, 1.0)
        elif step % self.every == 0:
            self._pull(model, 0.95 ** self.every * (step / self.total) ** 3)

    @torch.no_grad()
    def _pull(self, model: nn.Module, decay: float) -> None:
        live = model.state_dict()
        for k, ema in self.state.items():
            ema.lerp_(live[k], 1.0 - decay)
            live[k].copy_(ema)

    def state_dict(self) -> dict[str, torch.Tensor]:
        return {k: v.detach().cpu().clone() for k, v in self.state.items()}

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        for k, v in self.state.items():
            v.copy_(state[k])


def amp_enabled(cfg_amp: str, device: torch.device) -> bool:
    if cfg_amp == "off":
        return False
    if cfg_amp == "bf16":
        return True
    return bf16_autocast_ok(device)


TTA_MODES = ("none", "flip", "multicrop")


def tta_logits(model: nn.Module, x: torch.Tensor, tta: bool | str = False) -> torch.Tensor:
    """float32 logits of a normalised batch under test-time augmentation ``tta``:

    * ``"none"`` / False -- the image alone;
    * ``"flip"`` / True -- the mean over the image and its mirror image;
    * ``"multicrop"`` -- airbench's 6 views: 1/2 x flip TTA of the image plus 1/4 x flip
      TTA of each of its two one-pixel translations (reflect-padded, shifted up-left and
      down-right).
    """
    mode = {False: "none", True: "flip"}.get(tta, tta) if isinstance(tta, bool) else tta
    if mode not in TTA_MODES:
        raise ValueError(f"tta must be one of {', '.join(TTA_MODES)}, got {tta!r}")

    def mirror(v: torch.Tensor) -> torch.Tensor:
        return 0.5 * (model(v).float() + model(v.flip(3)).float())

    if mode == "none":
        return model(x).float()
    if mode == "flip":
        return mirror(x)
    h, w = x.shape[2:]
    padded = nn.functional.pad(x, (1, 1, 1, 1), mode="reflect")
    shifted = [padded[:, :, :h, :w], padded[:, :, 2:, 2:]]
    return 0.5 * mirror(x) + 0.25 * sum(mirror(v.contiguous(memory_format=torch.channels_last)) for v in shifted)


@torch.inference_mode()
def predict_logits(model: nn.Module, images: torch.Tensor, mean, std, device: torch.device,
                   batch_size: int = 1000, tta: bool | str = False, amp: bool = False) -> torch.Tensor:
    """Logits for uint8 images under test-time augmentation ``tta`` (see :func:`tta_logits`)."""
    model.eval()
    out = []
    for start in range(0, len(images), batch_size):
        x = normalize(images[start : start + batch_size].to(device), mean, std).contiguous(
            memory_format=torch.channels_last)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp):
            out.append(tta_logits(model, x, tta).cpu())
    return torch.cat(out)


@torch.inference_mode()
def predict_embeddings(model: nn.Module, images: torch.Tensor, mean, std, device: torch.device,
                       batch_size: int = 1000, amp: bool = False) -> torch.Tensor:
    """float32 ``embed()`` vectors of uint8 images (no test-time augmentation)."""
    model.eval()
    out = []
    for start in range(0, len(images), batch_size):
        x = normalize(images[start : start + batch_size].to(device), mean, std).contiguous(
            memory_format=torch.channels_last)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp):
            out.append(model.embed(x).float().cpu())
    return torch.cat(out)


def knn_accuracy(train_emb: torch.Tensor, train_y: torch.Tensor, query_emb: torch.Tensor, query_y: torch.Tensor,
                 k: int = 5) -> float:
    """k-NN (cosine, majority vote) accuracy with fedsim's own classifier, as evaluate-extractor."""
    from fedsim.classifiers import KNNClassifier

    knn = KNNClassifier(k=k, metric="cosine", device="cpu").fit(train_emb.numpy(), train_y.numpy())
    return float(knn.score(query_emb.numpy(), query_y.numpy()))


def train_extractor(cfg: TrainConfig, out_dir: str | Path, resume: bool = False) -> dict[str, Any]:
    """Train, checkpointing every epoch to ``out_dir/last.pt``; returns the final checkpoint."""
    from fedsim.extractors import REGISTRY

    out_dir = Path(out_dir)
    spec = REGISTRY.create(cfg.model)
    device = best_device(cfg.device)
    use_amp = amp_enabled(cfg.amp, device)
    if device.type == "cpu":
        torch.set_num_threads(max(1, torch.get_num_threads()))

    images, labels, classes = load_uint8(cfg.dataset, cfg.root or None, "train", cfg.download,
                                         spec.input_size, cfg.num_workers)
    tr_idx, val_idx = stratified_split(labels.numpy(), cfg.val_size, cfg.seed)
    if cfg.train_subset:
        tr_idx = tr_idx[torch.randperm(len(tr_idx), generator=torch.Generator().manual_seed(cfg.seed)).numpy()]
        tr_idx = tr_idx[: cfg.train_subset]
    x_train, y_train = images[tr_idx], labels[tr_idx]
    x_val, y_val = images[val_idx], labels[val_idx]
    log.info("training %s on %s: %d train / %d validation images, %d classes, device %s, bf16 %s",
             cfg.model, cfg.dataset, len(tr_idx), len(val_idx), len(classes), device, use_amp)

    torch.manual_seed(cfg.seed)
    options = cfg.model_options()
    model = spec.build(len(classes), **options)
    if getattr(model, "whiten", None) is not None:  # frozen patch whitening from (at most 5,000) training images
        model.init_whitening(normalize(x_train[:5000], spec.mean, spec.std))
    model = model.to(device).to(memory_format=torch.channels_last)
    opt = _optimizer(cfg, model)
    gen = torch.Generator().manual_seed(cfg.seed)
    steps_per_epoch = len(tr_idx) // cfg.batch_size  # drop the ragged last batch (BN statistics)
    if steps_per_epoch < 1:
        raise ValueError(f"batch_size {cfg.batch_size} exceeds the {len(tr_idx)} training images")
    total_steps = cfg.epochs * steps_per_epoch
    lookahead = Lookahead(model, cfg.lookahead_every, total_steps) if cfg.lookahead_every else None
    # alternate flips: a fixed random half is mirrored on even epochs, the other half on odd ones
    base_flip = torch.rand(len(tr_idx), generator=torch.Generator().manual_seed(cfg.seed + 1)) < 0.5
    history: list[dict[str, float]] = []
    start_epoch = 0

    last = out_dir / "last.pt"
    if resume and last.is_file():
        ck = load_checkpoint(last)
        # fields added since the checkpoint was written take their defaults
        if {**dataclasses.asdict(TrainConfig()), **ck["config"]} != dataclasses.asdict(cfg):
            raise ValueError(f"{last} was written with a different config; use another --out or drop --resume")
        model.load_state_dict(ck["model"])
        opt.load_state_dict(ck["optimizer"])
        gen.set_state(ck["generator"])
        if lookahead is not None:
            lookahead.load_state_dict(ck["lookahead"])
        history, start_epoch = ck["history"], ck["epoch"]
        log.info("resuming from %s after epoch %d", last, start_epoch)

    loss_fn = nn.CrossEntropyLoss(label_smoothing=cfg.label_smoothing)
    # not the groups' lr: a resumed optimizer holds the scheduled one
    base_lrs = [cfg.lr * g.get("lr_scale", 1.0) for g in opt.param_groups]
    whiten = getattr(model, "whiten", None)
    for epoch in range(start_epoch, cfg.epochs):
        if whiten is not None and cfg.whiten_bias_epochs:
            whiten.bias.requires_grad_(epoch < cfg.whiten_bias_epochs)  # a None grad is skipped by the optimizer
        model.train()
        t0 = time.perf_counter()
        perm = torch.randperm(len(tr_idx), generator=gen)
        loss_sum = correct = seen = 0.0
        bar = tqdm(range(steps_per_epoch), desc=f"epoch {epoch + 1}/{cfg.epochs}", unit="batch", leave=False)
        for i in bar:
            step = epoch * steps_per_epoch + i
            for g, base in zip(opt.param_groups, base_lrs):
                g["lr"] = base * _lr_factor(cfg, step, total_steps)
            idx = perm[i * cfg.batch_size : (i + 1) * cfg.batch_size]
            random_flip = cfg.flip and cfg.flip_mode == "random"
            xb = random_crop_flip(x_train[idx], cfg.crop_padding, random_flip, gen, cfg.pad_mode)
            if cfg.flip and cfg.flip_mode == "alternate":
                xb = torch.where((base_flip[idx] ^ bool(epoch % 2))[:, None, None, None], xb.flip(3), xb)
            xb = cutout(xb, cfg.cutout, gen)
            xb = normalize(xb.to(device), spec.mean, spec.std).contiguous(memory_format=torch.channels_last)
            yb = y_train[idx].to(device)
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=use_amp):
                logits = model(xb)
                loss = loss_fn(logits.float(), yb)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            if cfg.grad_clip_value:
                nn.utils.clip_grad_value_(model.parameters(), cfg.grad_clip_value)
            if cfg.grad_clip_norm:
                nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip_norm)
            opt.step()
            if lookahead is not None:
                lookahead.step(model, step + 1)
            loss_sum += float(loss.detach()) * len(idx)
            correct += float((logits.argmax(1) == yb).sum())
            seen += len(idx)
            bar.set_postfix(loss=f"{loss_sum / seen:.3f}")
        record = {"epoch": epoch + 1, "lr": opt.param_groups[0]["lr"], "train_loss": loss_sum / seen,
                  "train_acc_augmented": correct / seen, "epoch_s": time.perf_counter() - t0}
        if len(val_idx):
            logits = predict_logits(model, x_val, spec.mean, spec.std, device, amp=use_amp)
            record["val_loss"] = float(nn.functional.cross_entropy(logits, y_val))
            record["val_acc"] = float((logits.argmax(1) == y_val).float().mean())
            if epoch + 1 == cfg.epochs:  # final figures: TTA and the embedding's 5-NN accuracy
                t1 = time.perf_counter()
                modes = ["flip"] * cfg.tta + ["multicrop"] * (cfg.tta and cfg.tta_translate)
                for mode in modes:
                    tta = predict_logits(model, x_val, spec.mean, spec.std, device, tta=mode, amp=use_amp)
                    record[f"val_acc_{mode}"] = float((tta.argmax(1) == y_val).float().mean())
                # 5-NN of the plain embeddings and of extractor.tta's default "flip" (the mean of
                # the image's and its mirror image's embedding): each view is embedded once
                def embed(x: torch.Tensor) -> torch.Tensor:
                    return predict_embeddings(model, x, spec.mean, spec.std, device, amp=use_amp)

                plain_tr, plain_val = embed(x_train), embed(x_val)
                flip_tr = 0.5 * (plain_tr + embed(x_train.flip(3)))
                flip_val = 0.5 * (plain_val + embed(x_val.flip(3)))
                record["val_knn5"] = knn_accuracy(plain_tr, y_train, plain_val, y_val, k=5)
                record["val_knn5_flip"] = knn_accuracy(flip_tr, y_train, flip_val, y_val, k=5)
                record["final_eval_s"] = time.perf_counter() - t1
        history.append(record)
        log.info("epoch %d/%d: %s", epoch + 1, cfg.epochs,
                 ", ".join(f"{k} {v:.4f}" for k, v in record.items() if k != "epoch"))
        save_checkpoint(last, _payload(cfg, model, classes, history, epoch + 1, opt, gen, lookahead))

    final = _payload(cfg, model, classes, history, cfg.epochs)
    save_checkpoint(out_dir / "final.pt", final)
    plot_history(history, out_dir / "curves.png", title=f"{cfg.model} on {cfg.dataset} ({cfg.recipe} recipe)")
    (out_dir / "history.json").write_text(json.dumps(history, indent=2))
    return final


def _payload(cfg: TrainConfig, model: nn.Module, classes: list[str], history: list[dict[str, float]],
             epoch: int, opt: torch.optim.Optimizer | None = None, gen: torch.Generator | None = None,
             lookahead: Lookahead | None = None) -> dict:
    """A checkpoint: weights (contiguous, float32), what rebuilds the model (``arch``,
    ``num_classes``, ``model_options``), config and history; with ``opt`` / ``gen`` /
    ``lookahead`` also the optimizer, RNG and EMA states an exact ``--resume`` needs."""
    state = {k: v.detach().cpu().contiguous().clone() for k, v in model.state_dict().items()}
    payload = {
        "model": state, "arch": cfg.model, "num_classes": len(classes), "classes": classes,
        "model_options": cfg.model_options(), "config": dataclasses.asdict(cfg), "history": history,
        "epoch": epoch, "weights_sha256": state_hash(state),
    }
    if opt is not None:
        payload["optimizer"] = opt.state_dict()
    if gen is not None:
        payload["generator"] = gen.get_state()
    if lookahead is not None:
        payload["lookahead"] = lookahead.state_dict()
    return payload


def plot_history(history: list[dict[str, float]], path: Path, title: str) -> None:
    """Loss and accuracy per epoch, train (augmented) vs validation (clean)."""
    from fedsim.plotting import pyplot, save_figure

    plt = pyplot()
    epochs = [h["epoch"] for h in history]
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 4))
    ax1.plot(epochs, [h["train_loss"] for h in history], label="train (augmented)")
    if "val_loss" in history[0]:
        ax1.plot(epochs, [h["val_loss"] for h in history], label="validation")
    ax1.set(xlabel="epoch", ylabel="cross-entropy loss", title="loss")
    ax2.plot(epochs, [100 * h["train_acc_augmented"] for h in history], label="train (augmented)")
    if "val_acc" in history[0]:
        ax2.plot(epochs, [100 * h["val_acc"] for h in history], label="validation")
    ax2.set(xlabel="epoch", ylabel="accuracy (%)", title="accuracy")
    for ax in (ax1, ax2):
        ax.grid(alpha=0.3)
        ax.legend()
    fig.suptitle(title)
    fig.tight_layout()
    save_figure(fig, path)


__all__ = ["TrainConfig", "RECIPES", "MODEL_OPTIONS", "train_extractor", "predict_logits", "tta_logits"]
