"""Training zoo CNNs on an image classification split (``fedsim train-extractor``).

Two recipes, any value overridable:

* ``study`` reproduces the original study's best recipe (seed-analysis §1.3, code
  ``_13hj``): random crop (padding 4) + horizontal flip, Adam lr 1e-3, weight decay 1e-4,
  gradient value clipping 0.5, batch 64, 50 epochs, no schedule.
* ``fast`` is a modern fast-CIFAR recipe: SGD + Nesterov, one-cycle learning rate stepped
  per batch, label smoothing, reflect-padded translation + flip, batch 512, flip
  test-time augmentation.

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
}


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
    schedule: str = "none"  # none | onecycle | cosine (stepped per batch)
    warmup_fraction: float = 0.2
    label_smoothing: float = 0.0
    grad_clip_value: float | None = 0.5
    grad_clip_norm: float | None = None
    crop_padding: int = 4
    pad_mode: str = "constant"  # constant | reflect
    flip: bool = True
    cutout: int = 0  # side of the square blanked per training image (0 = off)
    val_size: int = 5000
    tta: bool = False
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
        ]
        for ok, message in rules:
            if not ok:
                raise ValueError(message)


def _optimizer(cfg: TrainConfig, model: nn.Module) -> torch.optim.Optimizer:
    # no weight decay on BN parameters and biases (standard; decaying BN scales hurts)
    decay = [p for p in model.parameters() if p.ndim > 1]
    rest = [p for p in model.parameters() if p.ndim <= 1]
    groups = [{"params": decay, "weight_decay": cfg.weight_decay}, {"params": rest, "weight_decay": 0.0}]
    if cfg.optimizer == "adam":
        return torch.optim.Adam(groups, lr=cfg.lr)
    return torch.optim.SGD(groups, lr=cfg.lr, momentum=cfg.momentum, nesterov=cfg.nesterov)


def _lr_factor(cfg: TrainConfig, step: int, total: int) -> float:
    """Multiplier of the base lr at a batch step: warmup then linear (onecycle) or cosine decay."""
    if cfg.schedule == "none":
        return 1.0
    warm = int(cfg.warmup_fraction * total)
    if step < warm:
        return 0.1 + 0.9 * step / max(1, warm)
    progress = (step - warm) / max(1, total - warm)
    if cfg.schedule == "onecycle":
        return max(0.0, 1.0 - progress)
    return 0.5 * (1 + math.cos(math.pi * progress))


def amp_enabled(cfg_amp: str, device: torch.device) -> bool:
    if cfg_amp == "off":
        return False
    if cfg_amp == "bf16":
        return True
    return bf16_autocast_ok(device)


@torch.inference_mode()
def predict_logits(model: nn.Module, images: torch.Tensor, mean, std, device: torch.device,
                   batch_size: int = 1000, tta: bool = False, amp: bool = False) -> torch.Tensor:
    """Logits for uint8 images; with ``tta`` the mean of the image and its mirror."""
    model.eval()
    out = []
    for start in range(0, len(images), batch_size):
        x = normalize(images[start : start + batch_size].to(device), mean, std).contiguous(
            memory_format=torch.channels_last)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp):
            logits = model(x).float()
            if tta:
                logits = 0.5 * (logits + model(x.flip(3)).float())
        out.append(logits.cpu())
    return torch.cat(out)


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
    x_train, y_train = images[tr_idx], labels[tr_idx]
    x_val, y_val = images[val_idx], labels[val_idx]
    log.info("training %s on %s: %d train / %d validation images, %d classes, device %s, bf16 %s",
             cfg.model, cfg.dataset, len(tr_idx), len(val_idx), len(classes), device, use_amp)

    torch.manual_seed(cfg.seed)
    model = spec.build(len(classes)).to(device).to(memory_format=torch.channels_last)
    opt = _optimizer(cfg, model)
    gen = torch.Generator().manual_seed(cfg.seed)
    steps_per_epoch = len(tr_idx) // cfg.batch_size  # drop the ragged last batch (BN statistics)
    total_steps = cfg.epochs * steps_per_epoch
    history: list[dict[str, float]] = []
    start_epoch = 0

    last = out_dir / "last.pt"
    if resume and last.is_file():
        ck = load_checkpoint(last)
        if ck["config"] != dataclasses.asdict(cfg):
            raise ValueError(f"{last} was written with a different config; use another --out or drop --resume")
        model.load_state_dict(ck["model"])
        opt.load_state_dict(ck["optimizer"])
        gen.set_state(ck["generator"])
        history, start_epoch = ck["history"], ck["epoch"]
        log.info("resuming from %s after epoch %d", last, start_epoch)

    loss_fn = nn.CrossEntropyLoss(label_smoothing=cfg.label_smoothing)
    base_lrs = [cfg.lr for _ in opt.param_groups]  # not the groups' lr: a resumed optimizer holds the scheduled one
    for epoch in range(start_epoch, cfg.epochs):
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
            xb = cutout(random_crop_flip(x_train[idx], cfg.crop_padding, cfg.flip, gen, cfg.pad_mode), cfg.cutout, gen)
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
        history.append(record)
        log.info("epoch %d/%d: %s", epoch + 1, cfg.epochs,
                 ", ".join(f"{k} {v:.4f}" for k, v in record.items() if k != "epoch"))
        save_checkpoint(last, _payload(cfg, model, classes, history, epoch + 1, opt, gen))

    final = _payload(cfg, model, classes, history, cfg.epochs)
    save_checkpoint(out_dir / "final.pt", final)
    plot_history(history, out_dir / "curves.png", title=f"{cfg.model} on {cfg.dataset} ({cfg.recipe} recipe)")
    (out_dir / "history.json").write_text(json.dumps(history, indent=2))
    return final


def _payload(cfg: TrainConfig, model: nn.Module, classes: list[str], history: list[dict[str, float]],
             epoch: int, opt: torch.optim.Optimizer | None = None, gen: torch.Generator | None = None) -> dict:
    state = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
    payload = {
        "model": state, "arch": cfg.model, "num_classes": len(classes), "classes": classes,
        "config": dataclasses.asdict(cfg), "history": history, "epoch": epoch,
        "weights_sha256": state_hash(state),
    }
    if opt is not None:
        payload["optimizer"] = opt.state_dict()
    if gen is not None:
        payload["generator"] = gen.get_state()
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


__all__ = ["TrainConfig", "RECIPES", "train_extractor", "predict_logits"]
