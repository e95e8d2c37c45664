"""Image classification in either engine: one runner behind the mnist, CIFAR-10 and ablation presets."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar, Literal

import numpy as np

from twinnet import TwinnetError, hardware, trace
from twinnet.architectures import MODELS
from twinnet.checkpoint import Checkpointer
from twinnet.config import to_dict
from twinnet.data.arrays import ArrayDataset
from twinnet.data.augment import BatchAugment, normalize
from twinnet.data.device import DeviceImageSource, on_device
from twinnet.data.images import ImageSource
from twinnet.learner import FlipAveraged, Lookahead, evaluate, make_learner
from twinnet.registry import Experiment, register
from twinnet.report import analysis, plots
from twinnet.report.blocks import Figure, Section, Table, Text
from twinnet.runs import CHECKPOINT, CONFIG, METRICS, SUMMARY, RunDir
from twinnet.structure import count_parameters, save_structures
from twinnet.train import Diverged, fit, global_batch, train_config
from twinnet.twins import DTYPES, build_twins
from twinnet.whitening import EPS as WHITEN_EPS


@dataclass(frozen=True)
class ImageConfig(train_config(optimizer="adam", lr=1e-3, momentum=0.9, schedule="onecycle", batch_size=128,
                               epochs=4, train_eval="running")):
    resumable: ClassVar[bool] = True  # a checkpoint every epoch; `twinnet run --resume RUN_DIR` continues there
    optimizers: ClassVar[tuple[str, ...]] = ("sgd", "adam", "adamw", "rmsprop", "muon")
    # they move the work, not its result
    resume_may_change: ClassVar[frozenset[str]] = frozenset({"device", "verify", "checkpoint_every",
                                                             "checkpoint_every_s", "channels_last",
                                                             "conv_weight_grad"})

    dataset: Literal["mnist", "fashion-mnist", "cifar10"] = "mnist"
    verify: bool = True  # check the data files against the official checksums
    model: str = "mnist-cnn"  # a name from `twinnet summary`
    engine: Literal["numpy", "torch"] = "numpy"
    dtype: Literal["float32", "float64"] = "float32"
    train_subset: int = 0  # train on this many samples (0: all), for quick runs
    test_subset: int = 0  # evaluate on this many test samples (0: all)
    val_split: int = 0  # hold this many training images out as a validation set (0: none); keep_best/patience watch it
    # augmentation of each training batch (all off: the course recipe)
    crop_pad: int = 0  # random crop after this much reflect padding (CIFAR recipe: 4)
    # horizontal flip: true, a fresh coin per image and batch; alternate, airbench's alternating flips (each image
    # mirrored by a coin in the first epoch, then the other way round every next epoch)
    flip: bool | Literal["alternate"] = False
    rotate: float = 0.0  # random rotation, degrees either way
    translate: float = 0.0  # random shift, fraction of the image size
    scale: float = 0.0  # random zoom in [1 - scale, 1 + scale]
    jitter: float = 0.0  # colour jitter: brightness, contrast and saturation factors in [1 - j, 1 + j]
    erase_p: float = 0.0  # random erasing (cutout) probability per image
    # progressive resizing: the first small_crop_until of the epochs train on a random small_crop x small_crop
    # window of each augmented image (a convolution costs about (small_crop / side)^2 of a whole image), the
    # rest and every evaluation on whole images; needs a model that ends in a global pool (airbench94). 0: off
    small_crop: int = 0
    small_crop_until: float = 0.6  # ... this fraction of the training's epochs (rounded to whole epochs)
    # hardware (torch engine)
    device: Literal["auto", "cpu", "cuda"] = "auto"  # auto: CUDA when available, else the CPU (all cores)
    # bfloat16 mixed precision. auto: on CUDA, and on a CPU only where it has native bfloat16 (AVX512-BF16,
    # AMX); without it autocast is emulated and trained 18x slower (docs/RESULTS.md). true forces it, with a warning
    amp: bool | Literal["auto"] = "auto"
    # images and convolution weights laid out NHWC in memory (torch engine): on a 2-core AVX2 CPU, 1.15-1.3x
    # faster training steps for vgg-reduced, mnist-cnn and airbench94 (docs/RESULTS.md); false: NCHW
    channels_last: bool = True
    # how the weight gradient of a plain 3x3 convolution on maps of 8x8 or less is computed (torch engine): library,
    # torch's own (oneDNN on a CPU); matmul, nine matmuls, one per kernel offset (torch_nn.conv_grad); auto, matmul
    # on a CPU with AMX under bf16 autocast, where it made airbench94's and cifar-fast's steps 5-30% shorter
    # (docs/RESULTS.md, session 40), else library. The same gradient, each entry rounded once in bf16 as oneDNN's
    conv_weight_grad: Literal["auto", "library", "matmul"] = "auto"
    # recipe additions (airbench94's)
    norm_bias_lr: float = 1.0  # batch norm biases' learning rate: this many times lr (their weight decay: / it); torch
    # a whitening layer's (airbench94's) eps, added to each patch direction's variance before its filter is scaled by
    # 1 / sqrt(variance + eps): larger damps the directions of least variance (airbench: 5e-4)
    whiten_eps: float = WHITEN_EPS
    lookahead: int = 0  # steps between lookahead averages of the weights (0: none; learner.Lookahead)
    # optimizer=muon: the convolution filters' rate (the rest train at lr) and momentum (Nesterov's form);
    # these defaults are airbench94_muon's for batches of 2,000 (cifar-fast sets 0.12 and 0.8 for its 1,000)
    muon_lr: float = 0.24
    muon_momentum: float = 0.6
    muon_ns_steps: int = 3  # Newton-Schulz iterations that orthogonalise each filter's update (airbench94_muon: 3)
    tta: Literal["none", "flip", "flip_translate"] = "none"  # test-time augmentation of every evaluation
    # progressive freezing (FreezeOut, Brock et al. 2017), torch engine: "N@E" stages, comma-separated: once epoch
    # E is done (0: from the start) the network's layers 0 to N-1 stop training (batch norm's running statistics
    # there still follow the batches). Their weight gradients, and the input gradient of the layer after them, are
    # then never computed: on a CPU that time is saved in full. Empty: none (airbench's whitening bias still
    # stops after 3 epochs)
    freeze: str = ""

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.model not in MODELS:
            raise ValueError(f"unknown model {self.model!r}; known: {', '.join(sorted(MODELS))}")
        if self.train_subset < 0 or self.test_subset < 0 or self.val_split < 0:
            raise ValueError("train_subset, test_subset and val_split must be >= 0")
        if (self.patience or self.keep_best or self.stop_acc) and not self.val_split:
            raise ValueError("early stopping (patience > 0), keep_best and stop_acc watch a validation set: set "
                             "val_split > 0 too")
        side = MODELS[self.model].input_shape[-1]
        if self.crop_pad >= side:
            raise ValueError(f"crop_pad={self.crop_pad} must be below the image side ({side} for {self.model}); "
                             "the CIFAR-10 recipe uses 4")
        if not 0 <= self.small_crop < side:
            raise ValueError(f"small_crop={self.small_crop} must be 0 (off) or a side below the image's ({side} for "
                             f"{self.model})")
        if not 0 <= self.small_crop_until <= 1:
            raise ValueError(f"small_crop_until={self.small_crop_until} is a fraction of the epochs: in [0, 1]")
        if self.jitter < 0:
            raise ValueError(f"jitter={self.jitter} is the colour jitter's strength: factors in [1 - jitter, "
                             "1 + jitter], so >= 0 (0: off; 0.1 to 0.4 is usual)")
        if not 0 < self.whiten_eps < float("inf"):
            raise ValueError(f"whiten_eps={self.whiten_eps} is added to each patch variance before its square root: "
                             f"it must be a finite number > 0 (airbench: {WHITEN_EPS})")
        if self.whiten_eps != WHITEN_EPS and MODELS[self.model].prepare is None:
            raise ValueError(f"whiten_eps sets a whitening layer, which {self.model} has none of; the models with one: "
                             f"{', '.join(sorted(k for k, v in MODELS.items() if v.prepare is not None))}")
        if not self.norm_bias_lr > 0:
            raise ValueError(f"norm_bias_lr={self.norm_bias_lr} must be > 0 (airbench94: 64)")
        if self.lookahead < 0:
            raise ValueError(f"lookahead={self.lookahead} must be >= 0 (0: none; airbench94: 5)")
        if self.steps and self.lookahead > self.steps:
            raise ValueError(_lookahead_too_long(self.lookahead, self.steps))
        if not self.muon_lr > 0 or not 0 <= self.muon_momentum < 1:
            raise ValueError("muon_lr must be > 0 and muon_momentum in [0, 1)")
        if self.muon_ns_steps < 1:
            raise ValueError(f"muon_ns_steps={self.muon_ns_steps} is a number of Newton-Schulz iterations: >= 1 "
                             "(airbench94_muon: 3; 5 orthogonalises more exactly)")
        if self.optimizer == "muon" and self.engine != "torch":
            raise ValueError("optimizer=muon belongs to the torch engine (the NumPy engine has no Muon); for the "
                             "NumPy engine use optimizer=sgd (and norm_bias_lr=1)")
        if self.engine == "numpy" and self.norm_bias_lr != 1:
            raise ValueError("norm_bias_lr (a parameter group of its own) needs engine=torch: twinnet's runs build "
                             "parameter groups, and scale their rates by a schedule, in the torch engine only")
        if freeze_stages(self.freeze) and self.engine != "torch":
            raise ValueError("freeze needs engine=torch (a layer stops training by needing no gradient); the NumPy "
                             "engine trains every layer: add --set freeze= (empty) to train it there")
        if self.engine == "numpy" and (self.amp is True or self.device == "cuda"):
            raise ValueError("amp and device=cuda belong to the torch engine; the NumPy engine runs float32/64 "
                             "on the CPU")
        if self.engine == "numpy" and self.conv_weight_grad == "matmul":
            raise ValueError("conv_weight_grad=matmul chooses a path of the torch engine; the NumPy engine computes "
                             "its own gradients (im2col): leave conv_weight_grad at auto")
        self.augment()

    def augment(self) -> BatchAugment:
        return BatchAugment(crop_pad=self.crop_pad, flip=self.flip is True, rotate=self.rotate, translate=self.translate,
                            scale=self.scale, brightness=self.jitter, contrast=self.jitter, saturation=self.jitter,
                            erase_p=self.erase_p)


@dataclass(frozen=True)
class ImageData:
    """A task's images ready for the loop: augmented training batches, and normalised evaluation sets."""

    train: ImageSource
    val: ArrayDataset | None
    test: ArrayDataset
    classes: tuple[str, ...]
    source: str  # where the images came from
    lossy: bool  # a lossy copy (CIFAR-10 as JPEG): figures not comparable to lossless results
    fingerprint: str  # SHA-256 of the images and labels as loaded: a resumed run must find the same data


def load_images(cfg: ImageConfig, data_dir: Path | None = None) -> ImageData:
    """The dataset (from ``data_dir``, else the loaders' search), normalised per channel by the
    statistics of the images trained on."""
    from twinnet.data import cifar, mnist

    loader = {"mnist": mnist.load_mnist, "fashion-mnist": mnist.load_fashion_mnist, "cifar10": cifar.load_cifar10}
    split = loader[cfg.dataset](data_dir=data_dir, verify=cfg.verify)
    source, lossy = split.source, bool(getattr(split, "lossy", False))
    rng = np.random.default_rng(cfg.seed)

    def subset(ds: ArrayDataset, n: int) -> ArrayDataset:
        if not n or n >= len(ds):
            return ds
        idx = np.sort(rng.choice(len(ds), n, replace=False))
        return ArrayDataset(ds.x[idx], ds.y[idx])

    train, test = subset(split.train, cfg.train_subset), subset(split.test, cfg.test_subset)
    for name, ds in (("training", train), ("test", test)):
        if len(ds) == 0:
            raise TwinnetError(f"the {name} split of {split.source} holds no images; check the data directory")
    val = None
    if cfg.val_split:
        if cfg.val_split >= len(train):
            raise TwinnetError(f"val_split={cfg.val_split} leaves no training images (the training set has "
                               f"{len(train)}); choose a smaller val_split")
        held = np.zeros(len(train), bool)
        held[rng.choice(len(train), cfg.val_split, replace=False)] = True
        val, train = ArrayDataset(train.x[held], train.y[held]), ArrayDataset(train.x[~held], train.y[~held])
    axes = (0, 2, 3)  # statistics per channel, over images and pixels
    mean = tuple(train.x.mean(axis=axes) / 255)
    std = tuple(train.x.std(axis=axes) / 255)
    if min(std) == 0:  # normalising would divide by zero: every loss after it NaN
        flat = [c for c, v in enumerate(std) if v == 0]
        raise TwinnetError(f"the training images are constant in channel(s) {', '.join(map(str, flat))} (every pixel "
                           f"the same value, standard deviation 0), so they cannot be normalised and hold nothing to "
                           f"learn; check the data in {source}")
    dtype = DTYPES[cfg.dtype]
    norm = lambda ds: ArrayDataset(normalize(ds.x, mean, std, dtype), ds.y)  # noqa: E731
    flips = cfg.seed if cfg.flip == "alternate" else None
    steps = global_batch(cfg, len(train))
    small_epochs = round(cfg.small_crop_until * steps.total_steps(len(train)) / steps.steps_per_epoch(len(train)))
    batches = ImageSource(train.x, train.y, mean, std, cfg.augment(), dtype, flips, cfg.small_crop, small_epochs)
    return ImageData(batches, val and norm(val), norm(test), split.classes, source, lossy,
                     _fingerprint(split.train, split.test))


def _fingerprint(*sets: ArrayDataset) -> str:
    import hashlib

    h = hashlib.sha256()
    for ds in sets:
        for a in (ds.x, ds.y):
            a = np.ascontiguousarray(a)
            h.update(f"{a.dtype.str}{a.shape}".encode())
            h.update(memoryview(a).cast("B"))
    return h.hexdigest()


def check_against_data(cfg: ImageConfig, data: ImageData) -> None:
    """The settings that can be checked only once the data is loaded: one line naming each problem."""
    spec = MODELS[cfg.model]
    if tuple(data.train.x.shape[1:]) != spec.input_shape:
        raise TwinnetError(f"model {cfg.model} takes inputs {spec.input_shape}, but {cfg.dataset} has "
                           f"{tuple(data.train.x.shape[1:])}")
    if cfg.small_crop:
        _check_small_crop(cfg)
    _check_batch_of_one(cfg, len(data.train))
    if resolve_device(cfg) == "cpu":  # a GPU's memory is its own, and running out there is an error, not a kill
        _check_batch_fits(cfg, cfg.batch_len(len(data.train)))
    total = cfg.total_steps(len(data.train))
    if cfg.schedule == "warmup_cosine" and cfg.warmup_steps >= total:
        raise TwinnetError(f"warmup_steps={cfg.warmup_steps} must be below the run's {total:,} steps "
                           f"({cfg.epochs} epochs of {cfg.steps_per_epoch(len(data.train)):,}); lower it")


def _check_batch_of_one(cfg: ImageConfig, n: int) -> None:
    """A batch of one image cannot train a model whose batch norm normalises one value per channel (after a
    linear layer, or on 1x1 maps): torch refuses it, and the mean of one value leaves nothing to learn from.
    Checked, in both engines alike, only where the run would draw such a batch."""
    import torch

    from twinnet import distributed
    from twinnet.architectures import nn_namespace

    size = cfg.batch_len(n)
    if (n % size or size) != 1 or distributed.world().size > 1:
        return
    spec = MODELS[cfg.model]
    with torch.random.fork_rng():  # the run's random streams untouched
        model = spec.build(nn_namespace("torch")).train()
        try:
            with torch.no_grad():
                model(torch.zeros(1, *spec.input_shape))
            return
        except ValueError as e:
            if "more than 1 value per channel" not in str(e):
                raise
    if cfg.batching == "sample":
        why, fix = "batching=sample trains on one image per step", "use batching=mini with a batch_size of 2 or more"
    elif size == n:
        why, fix = "the training set is one image", "train on more images (train_subset)"
    else:
        other = next(b for b in (size + d * s for d in range(1, n) for s in (-1, 1)) if 2 <= b <= n and n % b != 1)
        why, fix = (f"batch_size={size} leaves a last batch of 1 of the {n:,} training images",
                    f"choose a batch_size that does not, e.g. {other}")
    raise TwinnetError(f"{cfg.model} has batch norm over one value per channel, which a batch of one image cannot "
                       f"train, and {why}; {fix}")


def _check_batch_fits(cfg: ImageConfig, batch: int) -> None:
    """Refuse a batch whose activations alone (every layer's output, kept for backward: a lower estimate)
    cannot fit in this machine's memory, before anything is built: Linux would kill the run without a word."""
    import torch

    from twinnet.architectures import nn_namespace
    from twinnet.structure import structure

    spec = MODELS[cfg.model]
    with torch.random.fork_rng(devices=[]):  # the run's random streams untouched (built on the CPU)
        rows, _ = structure(spec.build(nn_namespace("torch")), spec.input_shape, 1)
    per_image = (np.prod(spec.input_shape) * 4 + sum(r.activation_bytes for r in rows)) * (2 if cfg.dtype == "float64"
                                                                                          else 1)
    hardware.check_fits(float(per_image) * batch, f"batch_size={batch:,} (its activations, {per_image / 2**20:.2f} "
                        "MiB per image)")


def _check_small_crop(cfg: ImageConfig) -> None:
    """A model trained on small crops must map them to the same output as whole images (a global pool)."""
    import torch

    from twinnet.architectures import nn_namespace

    spec = MODELS[cfg.model]
    c = spec.input_shape[0]
    with torch.random.fork_rng(), torch.no_grad():  # the run's random streams untouched
        model = spec.build(nn_namespace("torch")).eval()
        whole = tuple(model(torch.zeros(1, *spec.input_shape)).shape)
        try:
            small = f"outputs of shape {tuple(model(torch.zeros(1, c, cfg.small_crop, cfg.small_crop)).shape)}"
        except RuntimeError as e:
            small = f"an error ({str(e).splitlines()[0]})"
    if small != f"outputs of shape {whole}":
        raise TwinnetError(f"model {cfg.model} cannot train on {cfg.small_crop}x{cfg.small_crop} crops: they give "
                           f"{small} where whole images give outputs of shape {whole}; small_crop needs a model "
                           "ending in a global pool (airbench94: a side of at least 9), or use 0")


def resolve_device(cfg: ImageConfig) -> str:
    """The device a torch run trains on: CUDA when asked for or (``auto``) present, else the CPU."""
    if cfg.engine == "numpy":
        return "cpu"
    import torch

    if cfg.device == "cuda" and not torch.cuda.is_available():
        raise TwinnetError("device=cuda, but torch sees no CUDA device; use --set device=cpu (or auto)")
    return "cuda" if cfg.device == "cuda" or (cfg.device == "auto" and torch.cuda.is_available()) else "cpu"


def run(cfg: ImageConfig, run_dir: RunDir, ctx) -> dict:
    t0 = time.perf_counter()
    data = load_images(cfg, ctx.data_dir)
    load_s = time.perf_counter() - t0
    check_against_data(cfg, data)
    spec = MODELS[cfg.model]
    batch = min(cfg.batch_len(len(data.train)), trace.MAX_BATCH)
    trace.save_trace(run_dir, cfg.model, spec.build, *data.train.view(np.arange(batch)))  # before the twins' seeding
    models = build_twins(spec.build, cfg.dtype, cfg.seed)
    model, device = models[cfg.engine], resolve_device(cfg)
    channels_last = cfg.engine == "torch" and cfg.channels_last
    if cfg.engine == "torch":
        import torch

        model = model.to(device=device, memory_format=torch.channels_last if channels_last else torch.preserve_format)
    amp = cfg.engine == "torch" and hardware.resolve_amp(cfg.amp, device)
    matmul_grads = False  # summary.json says which path the small maps' weight gradients took
    if cfg.engine == "torch" and hardware.resolve_conv_weight_grad(cfg.conv_weight_grad, device, amp):
        from twinnet.torch_nn import conv_grad

        matmul_grads = conv_grad.route_weight_grads(model) > 0
    hooks = [freezer(model, freeze_stages(cfg.freeze), global_batch(cfg, len(data.train)), len(data.train))]
    if spec.prepare is not None:  # set up from the images it will train on (airbench's whitening layer)
        hooks.append(spec.prepare(model, data.train.view(setup_sample(len(data.train)))[0], cfg.whiten_eps))
    on_epoch = epoch_hooks(hooks)
    learner = make_learner(model, cfg, params=param_groups(model, cfg), amp=amp, channels_last=channels_last)
    if cfg.lookahead:
        total = global_batch(cfg, len(data.train)).total_steps(len(data.train))
        if cfg.lookahead > total:  # epochs on a small training set; a fixed number of steps is refused earlier
            raise TwinnetError(_lookahead_too_long(cfg.lookahead, total))
        learner = Lookahead(learner, cfg.lookahead, total)
    if cfg.tta != "none":
        learner = FlipAveraged(learner, translate=1 if cfg.tta == "flip_translate" else 0)
    checkpoints = Checkpointer(
        run_dir.file(CHECKPOINT), to_dict(cfg), cfg.resume_may_change, defaults=to_dict(type(cfg)()),
        extra={"data_fingerprint": data.fingerprint, "amp": amp},
        mismatch={"data_fingerprint": f"the data found now ({data.source}) is not the data this run trained on; point "
                                      "--data-dir at that data, or start a new run"})
    resume = checkpoints.restore(learner)  # every check of a resume passes before it writes anything
    if resume is not None:
        if cfg.engine == "torch" and checkpoints.found["amp"] != amp:  # it goes on as it started (auto may differ)
            learner.amp = amp = bool(checkpoints.found["amp"])
            if amp and device == "cpu":
                hardware.resolve_amp(True, "cpu")  # the warning, if this CPU has no bfloat16
        # the metrics file may hold evaluations made after the checkpoint: keep exactly the checkpoint's
        run_dir.write_metrics([{"engine": cfg.engine, **r} for r in resume.history.records])
    else:  # interrupted before its first checkpoint (or the checkpoint is gone): it starts again from step 0
        run_dir.restart_metrics()
    if on_epoch is not None:  # what the epochs done so far change (a layer frozen at the start or before a checkpoint)
        on_epoch(0 if resume is None else
                 resume.step // global_batch(cfg, len(data.train)).steps_per_epoch(len(data.train)), learner)
    save_structures(run_dir, cfg.model, models, spec.input_shape, min(cfg.batch_len(len(data.train)), 256))
    # on a GPU the images stay there and each batch is cut, augmented and normalised there (crops and flips)
    train = on_device(data.train, device) if cfg.engine == "torch" and device != "cpu" else data.train
    try:
        history = fit(learner, train, data.test, cfg, val=data.val, monitor="val_acc",
                      on_eval=lambda rec: run_dir.append_metrics({"engine": cfg.engine, **rec}),
                      checkpoints=checkpoints, resume=resume, on_epoch=on_epoch, desc=f"{cfg.model}/{cfg.engine}",
                      progress=ctx.progress)
    except Diverged as e:
        saved = checkpoints.saved_step
        kept = (f"its last good checkpoint (step {saved:,}) is kept in {run_dir.file(CHECKPOINT)}"
                if saved is not None else "it had saved no checkpoint yet")
        e.summary = {"outcome": "diverged", "diverged_at_step": e.step, "engine": cfg.engine, "device": device,
                     "amp": amp, "model": cfg.model, "dataset": cfg.dataset, "data_source": data.source,
                     "lossy_data": data.lossy, "last_checkpoint_step": saved}
        e.args = (f"{e}: the run stopped and {kept}; summary.json says diverged",)
        raise
    last, best = history.last, history.best
    final = {k: last[k] for k in ("test_acc", "test_loss")}
    if cfg.keep_best and best is not None:  # the weights the validation set chose, as early stopping means
        final["test_loss"], final["test_acc"] = evaluate(learner, data.test.x, data.test.y)
    pred = learner.predict(data.test.x).argmax(1)
    run_dir.save_arrays("predictions.npz", y_true=data.test.y, y_pred=pred, classes=np.array(data.classes),
                        step_loss=np.asarray(history.step_losses, np.float64))  # every step's training loss
    # a class the test set lacks has no accuracy (null in summary.json), not NaN or 0%
    per_class = [float((pred[data.test.y == c] == c).mean()) if (data.test.y == c).any() else None
                 for c in range(len(data.classes))]
    return {
        "outcome": "stopped early" if history.stopped_early else "completed",
        "engine": cfg.engine,
        "device": device,
        "batches_made_on": "device" if isinstance(train, DeviceImageSource) else "host",
        "amp": amp,
        "conv_weight_grad": "matmul" if matmul_grads else "library",
        "model": cfg.model,
        "dataset": cfg.dataset,
        "data_source": data.source,
        "lossy_data": data.lossy,
        "params": count_parameters(model),
        **final,
        "train_acc": last["train_acc"],
        "train_loss": last["train_loss"],
        "best_test_acc": max(r["test_acc"] for r in history.records),
        **({"val_acc": best["value"], "selected_step": best["step"], "stopped_early": history.stopped_early}
           if cfg.keep_best and best is not None else {}),
        "per_class_acc": dict(zip(data.classes, per_class)),
        "train_time_s": last["time_s"],  # evaluations included
        "eval_time_s": last.get("eval_s", 0.0),  # of which evaluating
        "data_load_s": round(load_s, 3),
        "steps": last["step"],
        "train_size": len(data.train),  # the images an epoch goes through (the schedule's length depends on it)
    }


def freeze_stages(text: str) -> tuple[tuple[int, int], ...]:
    """``freeze``'s stages as (layers, epoch) pairs in epoch order: "9@4,1@1" -> ((1, 1), (9, 4)); refuses anything
    else, and stages that would not each freeze more layers than the one before."""
    stages = []
    for item in filter(None, (t.strip() for t in text.split(","))):
        layers, at, epoch = item.partition("@")
        if not (at and all(n.isascii() and n.isdigit() for n in (layers, epoch)) and int(layers) >= 1):
            raise ValueError(f"freeze={text!r}: each stage is LAYERS@EPOCH with whole numbers, LAYERS >= 1, e.g. "
                             "freeze=9@4 (layers 0-8 stop training after epoch 4); several: 1@1,9@4")
        if int(layers) >= 10**6 or int(epoch) >= 10**9:
            raise ValueError(f"freeze={text!r}: {item} is beyond any network's layers or any run's epochs")
        stages.append((int(layers), int(epoch)))
    stages.sort(key=lambda s: s[1])
    if any(later[0] <= earlier[0] for earlier, later in zip(stages, stages[1:])):
        raise ValueError(f"freeze={text!r}: a later stage must freeze more layers than an earlier one (a stage "
                         "freezing fewer would change nothing), e.g. 1@1,9@4")
    return tuple(stages)


def scale_freeze(text: str, fraction: float) -> str:
    """``freeze`` for a run of ``fraction`` of the steps: each stage's epoch scaled, rounded down (so that it
    stays within the shorter run)."""
    return ",".join(f"{n}@{int(epoch * fraction)}" for n, epoch in freeze_stages(text))


def freezer(model, stages: tuple[tuple[int, int], ...], batches, n_train: int):
    """The epoch hook of ``freeze``: once a stage's epoch is done, the network's first layers need no
    gradient (and the learner's gradient exchange is set up again). None without stages. Refuses a
    stage beyond the network's layers, or one whose epoch the run never finishes."""
    if not stages:
        return None
    layers = list(model)
    epochs = -(-batches.total_steps(n_train) // batches.steps_per_epoch(n_train))
    # the most layers that can be frozen with a parameter still training after them
    most = max((i for i, layer in enumerate(layers) if any(p.requires_grad for p in layer.parameters())), default=0)
    for n, epoch in stages:
        if n > most:
            raise TwinnetError(f"freeze={n}@{epoch}: this network has {len(layers)} layers (`twinnet summary` numbers "
                               f"them), and freezing {n} would leave no parameter training; freeze at most {most}")
        if epoch >= epochs:
            raise TwinnetError(f"freeze={n}@{epoch}: the run trains {epochs} epoch(s), so after epoch {epoch} nothing "
                               f"is left to train frozen; give an epoch below {epochs}")

    def freeze(epoch: int, learner) -> None:
        n = max((n for n, e in stages if epoch >= e), default=0)
        params = [p for layer in layers[:n] for p in layer.parameters() if p.requires_grad]
        for p in params:
            p.requires_grad_(False)
        if params:
            learner.trainable_changed()

    return freeze


def epoch_hooks(hooks):
    """One epoch hook calling each given one in turn (None among them skipped); None if there are none."""
    hooks = [h for h in hooks if h is not None]
    if not hooks:
        return None

    def on_epoch(epoch: int, learner) -> None:
        for hook in hooks:
            hook(epoch, learner)

    return on_epoch


def setup_sample(n: int, k: int = 5000) -> np.ndarray:
    """Indices of ``k`` training images spread evenly over the set: a stored set may be sorted by class
    (the JPEG copy's is: its first 5,000 images are all airplanes), and a layer set up from its first
    images would see one class (airbench takes the first 5,000 of the official files, which are mixed)."""
    return np.linspace(0, n - 1, min(k, n)).round().astype(np.int64)


def _lookahead_too_long(every: int, total: int) -> str:
    return (f"lookahead={every} is more steps than the run's {total}: no average would be taken, and the run "
            "would end on its initial weights (the last step loads the average); set lookahead to at most the "
            "steps (airbench94: 5), or 0 for none")


def param_groups(model, cfg: ImageConfig) -> list[dict] | None:
    """The torch optimiser's parameter groups: every parameter that trains (frozen ones left out),
    batch norm's biases in a group of their own at ``norm_bias_lr`` times the rate (and the weight
    decay divided by it), and under optimizer=muon the convolution filters in Muon's group at ``muon_lr``;
    None when that is all of them at one rate (and for the NumPy engine)."""
    if cfg.engine != "torch":
        return None
    import torch

    trainable = [p for p in model.parameters() if p.requires_grad]
    if cfg.norm_bias_lr == 1 and cfg.optimizer != "muon" and len(trainable) == len(list(model.parameters())):
        return None
    biases = [m.bias for m in model.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)
              and m.bias is not None and m.bias.requires_grad] if cfg.norm_bias_lr != 1 else []
    filters = [m.weight for m in model.modules() if isinstance(m, torch.nn.Conv2d)
               and m.weight.requires_grad] if cfg.optimizer == "muon" else []
    ids = {id(p) for p in biases + filters}
    groups = [{"params": [p for p in trainable if id(p) not in ids]}]
    if biases:
        groups.append({"params": biases, "lr": cfg.lr * cfg.norm_bias_lr,
                       "weight_decay": cfg.weight_decay / cfg.norm_bias_lr})
    if filters:
        groups.append({"params": filters, "lr": cfg.muon_lr, "momentum": cfg.muon_momentum, "nesterov": True,
                       "orthogonalize": True, "ns_steps": cfg.muon_ns_steps})
    return groups


def confusion_matrix(y_true: np.ndarray, y_pred: np.ndarray, n: int) -> np.ndarray:
    """Counts (n, n): row = true class, column = predicted class."""
    return np.bincount(y_true * n + y_pred, minlength=n * n).reshape(n, n)


def figures(path: Path) -> None:
    """curves.png and confusion.png, from the run's files."""
    run_dir = RunDir(path)
    s, metrics = run_dir.read_json(SUMMARY), run_dir.metrics()
    if s.get("outcome") == "diverged":
        return
    a = run_dir.load_arrays("predictions.npz")  # every file read before any figure is drawn: a damaged one changes nothing
    rates = learning_rates(run_dir, s)
    fig, ax = plots.figure(2 + (rates is not None), 5.5, 4.0)
    for j, (key, label) in enumerate((("loss", "cross-entropy loss"), ("acc", "accuracy"))):
        series = {split: ([r["epoch"] for r in metrics], [r[f"{split}_{key}"] for r in metrics])
                  for split in ("train", "val", "test") if f"{split}_{key}" in metrics[0]}
        if key == "loss" and len(a.get("step_loss", ())):  # every step, beside the evaluations
            steps = np.arange(1, len(a["step_loss"]) + 1)
            per_epoch = metrics[-1]["step"] / metrics[-1]["epoch"] if metrics[-1]["epoch"] else 1
            ax[0, j].plot(steps / per_epoch, a["step_loss"], color="0.6", lw=0.5, alpha=0.7,
                          label="train (each step)")
        plots.curves(ax[0, j], series, plots.SPLIT_STYLE, "epoch", label, logy=key == "loss")
        ax[0, j].set_title(f"{s['model']} ({s['engine']}): {label}")
    if rates is not None:
        epochs, lrs = rates
        ax[0, 2].plot(epochs, lrs, color="k", lw=1.2)
        ax[0, 2].scatter([r["epoch"] for r in metrics], [r["lr"] for r in metrics], s=12, color="C3", zorder=3,
                         label="at each evaluation")
        ax[0, 2].set(xlabel="epoch", ylabel="learning rate", title="learning-rate schedule (first group)")
        ax[0, 2].grid(alpha=0.3)
        ax[0, 2].legend(fontsize=8)
    plots.save(fig, run_dir.file("curves.png"))
    classes = [str(c) for c in a["classes"]]
    fig, ax = plots.figure(1, 6.5, 5.5)
    plots.confusion(ax[0, 0], confusion_matrix(a["y_true"], a["y_pred"], len(classes)), classes)
    plots.save(fig, run_dir.file("confusion.png"))


def learning_rates(run_dir: RunDir, s: dict) -> tuple[np.ndarray, np.ndarray] | None:
    """(epoch, lr) at every step of the run's schedule, from its configuration (None for runs that did
    not record their training set's size)."""
    from twinnet.config import make_config
    from twinnet.runs import CONFIG

    if "train_size" not in s:
        return None
    cfg = make_config(ImageConfig, run_dir.read_json(CONFIG)["config"])
    n = int(s["train_size"])
    steps = np.arange(1, int(s["steps"]) + 1)
    factor = cfg.lr_factor(n)
    # step k trains at the schedule's value k - 1 (twinnet.schedules)
    lrs = cfg.lr * (np.ones(len(steps)) if factor is None else np.array([factor(int(k) - 1) for k in steps]))
    return steps / cfg.steps_per_epoch(n), lrs


def report(path: Path) -> list:
    run_dir = RunDir(path)
    s, metrics = run_dir.read_json(SUMMARY), run_dir.metrics()
    if s.get("outcome") == "diverged":
        kept = s.get("last_checkpoint_step")
        return [Section("Diverged", [Text(
            f"The loss of {s['model']} ({s['engine']}) became NaN or infinite at step {s['diverged_at_step']:,}, so "
            "training stopped there" + (f"; the checkpoint of step {kept:,} is kept" if kept is not None else "")
            + f". Lower the learning rate and start a new run. {len(metrics)} evaluations before it are in "
            f"`{METRICS}`.")])]
    a = run_dir.load_arrays("predictions.npz")
    classes = [str(c) for c in a["classes"]]
    cm = confusion_matrix(a["y_true"], a["y_pred"], len(classes))
    notes = ("Train figures are the running mean over the steps since the previous evaluation. Training time "
             "excludes the time spent evaluating, shown beside it.")
    if "val_acc" in s:
        notes += (f"\n\nTest figures are those of the weights with the best validation accuracy "
                  f"({100 * s['val_acc']:.2f}% at step {s['selected_step']:,}"
                  + (f"; early stopping ended the run at step {s['steps']:,}" if s["stopped_early"] else "") + ").")
    return [
        Section("Final figures", [
            Table(["model", "engine", "params", "train acc", "test acc", "train loss", "test loss", "training time",
                   "evaluating"],
                  [[s["model"], s["engine"], f"{s['params']:,}", f"{100 * s['train_acc']:.2f}%",
                    f"{100 * s['test_acc']:.2f}%", f"{s['train_loss']:.4f}", f"{s['test_loss']:.4f}",
                    f"{training_s(s):.1f} s", f"{s.get('eval_time_s', 0.0):.1f} s"]], {2, 3, 4, 5, 6, 7, 8}),
            Text(notes + data_note(s))]),
        Section("Training curves", [Figure("curves.png", (
            f"{s['model']} ({s['engine']} engine) on {s['dataset']}: cross-entropy loss (log scale) and accuracy "
            "against epochs, train (running mean since the previous evaluation"
            + ("; grey: the loss of every training step" if "train_size" in s else "") + ")"
            + (", validation" if "val_acc" in metrics[0] else "") + " and test"
            + ("; and the learning rate at every step (dots: as each evaluation recorded it)."
               if "train_size" in s else ".")))]),
        Section("Analysis", [Text(analysis.overfitting(metrics)), Text(analysis.classes(cm, classes)),
                             Text(_against_published(run_dir, s))]),
        Section("Confusion matrix and per-class accuracy", [
            Figure("confusion.png", f"Confusion matrix on the {int(cm.sum()):,} test images: rows the true class, "
                                    "columns the predicted one, each cell the percentage of its row's images."),
            Table(["class", "test accuracy", "test images"],
                  [[c, f"{100 * cm[i, i] / cm[i].sum():.2f}%" if cm[i].sum() else "—", f"{int(cm[i].sum()):,}"]
                   for i, c in enumerate(classes)], {1, 2})]),
    ]


def _against_published(run_dir: RunDir, s: dict) -> str:
    """The sentence setting this run beside the published results of its experiment (none: empty)."""
    from twinnet.registry import EXPERIMENTS

    try:
        config = run_dir.read_json(CONFIG)
    except TwinnetError:
        return ""
    experiment = EXPERIMENTS.get(config.get("experiment")) if isinstance(config, dict) else None
    if experiment is None:
        return ""
    return analysis.against_published(s["test_acc"], experiment.published, bool(s.get("lossy_data")),
                                      bool(config.get("quick")))


def data_note(s: dict) -> str:
    """The report's line on the data: where it came from and, for a lossy copy, that it is one."""
    if not s.get("data_source"):
        return ""
    return f"\n\nData: {s['data_source']}" + (" — LOSSY: figures are not comparable to lossless CIFAR-10 results"
                                              if s.get("lossy_data") else "") + "."


def headline(s: dict) -> str:
    lossy = " (JPEG copy)" if s.get("lossy_data") else ""
    return (f"{s['model']} ({s['engine']}) on {s['dataset']}{lossy}: test accuracy {100 * s['test_acc']:.2f}% "
            f"(best {100 * s['best_test_acc']:.2f}%), test loss {s['test_loss']:.4f}, "
            f"{s['steps']:,} steps in {training_s(s):.1f} s of training (+{s.get('eval_time_s', 0.0):.1f} s "
            "evaluating)")


def training_s(s: dict) -> float:
    """Seconds a run spent training, its evaluations excluded (``train_time_s`` counts them)."""
    return s["train_time_s"] - s.get("eval_time_s", 0.0)


def preset(name: str, description: str, defaults: dict, quick: dict, published: tuple = ()) -> Experiment:
    """Register a named preset of the image runner (``published``: results for the same work, to set beside
    a run's)."""
    return register(Experiment(name=name, description=description, config_cls=ImageConfig, run=run, report=report,
                               figures=figures, headline=headline, defaults=defaults, quick=quick,
                               published=published))
