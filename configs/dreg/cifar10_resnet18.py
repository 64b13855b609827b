"""DReg against large-batch SGD on CIFAR-10, ResNet-18 (accelerator scale; one run per command).

    python -m jaxlab.main --config=configs/dreg/cifar10_resnet18.py:4096 --workdir=workdirs/dreg_c10/b4096
    python -m jaxlab.main --config=configs/dreg/cifar10_resnet18.py:4096,dreg --workdir=workdirs/dreg_c10/b4096_dreg
    # the argument: a global batch size (128 | 1024 | 4096 | 8192), then any of
    #   dreg  replicate the classifier, lambda cos(W1, W2)^2 with lambda = 1e-2 (--config.dreg.coefficient=...)
    #   sqrt  square-root instead of linear LR scaling
    #   lars  LARS (BN and bias masked out of the trust ratio and weight decay) instead of Nesterov
    # data: JAXLAB_DATA_DIR=/path/to/datasets (with cifar10_jpg/cifar10_jpg.tar.gz) before `python`, or
    #   --config.data.dir=/path/to/folder/of/the/tarball, or --config.data.path=/path/to/cifar10_jpg.tar.gz

Recipe (control B3 of the DReg study, tuned large-batch SGD; the same for every batch size): CIFAR ResNet-18,
200 epochs, Nesterov momentum 0.9, lr 0.1 x (batch / 128) (linear; `sqrt`: x sqrt(batch / 128)) with a 5-epoch linear
warm-up (Goyal et al. 2017) and cosine decay to 0, weight decay 5e-4 on kernels only, pad-4 random crop + flip,
bfloat16 compute with float32 parameters, per-device BatchNorm statistics. LARS: trust coefficient 1e-3 and
lr 1.0 x (batch / 1024) as a starting point, to be tuned (`--config.optimizer.learning_rate`); LARS has no
standard CIFAR recipe.

Hardware assumed: one GPU with >= 40 GB (batch 8192 at 32x32 in bf16) or several (the batch is global and is
split over every device; `--config.model.bn_sync=True` for synced statistics). Cost not yet measured here:
time a few steps first with `--config.training.num_train_steps=50`.

Expected accuracy (literature; no run recorded here yet): about 92-95% at batch 128 for this 200-epoch recipe;
without LR scaling ResNet-18 drops from 92.6% (batch 128) to 89.8% (batch 5120) (Novack et al. 2023, in the
note). Linear scaling with warm-up narrows that gap up to a few thousand examples per batch; at 8192 expect
a loss of 1-4 points against batch 128. DReg's claim is that it closes part of the remaining gap; the control
runs (this config without `dreg`, with `sqrt`, with `lars`) are what it must beat.
"""

from jaxlab.experiments import base_config

_MEAN_STD = "mean=(0.4914, 0.4822, 0.4465), std=(0.247, 0.243, 0.261)"
BATCH_SIZES = (128, 1024, 4096, 8192)
OPTIONS = ("dreg", "sqrt", "lars")


def get_config(arg: str = "4096"):
    batch, *options = [part.strip() for part in arg.split(",")]
    if not batch.isdigit() or int(batch) not in BATCH_SIZES or set(options) - set(OPTIONS):
        raise ValueError(f"configs/dreg/cifar10_resnet18.py:{arg}: give a batch size in {BATCH_SIZES}, "
                         f"optionally followed by any of {OPTIONS}, e.g. ':4096,dreg'")
    config = base_config("train")
    config.data.source = "cifar10_jpg"
    config.model.name = "resnet18_cifar"
    config.model.dtype = "bfloat16"
    config.training.batch_size = int(batch)
    config.training.num_epochs = 200
    config.optimizer.name = "lars" if "lars" in options else "nesterov"
    config.optimizer.momentum = 0.9
    config.optimizer.learning_rate = 1.0 if "lars" in options else 0.1
    config.optimizer.base_batch_size = 1024 if "lars" in options else 128
    config.optimizer.lr_scaling = "sqrt" if "sqrt" in options else "linear"
    config.optimizer.weight_decay = 5e-4
    config.optimizer.decay_bn_and_bias = False
    config.schedule.name = "cosine"
    config.schedule.warmup_epochs = 5.0
    config.augment.pipeline = f"pad_crop(padding=4)|flip_lr|normalize({_MEAN_STD})"
    config.augment.eval_pipeline = f"normalize({_MEAN_STD})"
    config.dreg.enabled = "dreg" in options
    config.dreg.coefficient = 1e-2
    config.eval_batch_size = 1000
    config.log_every_steps = 50
    return config
