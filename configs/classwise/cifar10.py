"""Class-level effects of random-resized-crop strength on CIFAR-10 (ResNet-18; GPU scale, CPU possible).

    JAXLAB_DATA_DIR=/path/to/datasets python -m jaxlab.main --config=configs/classwise/cifar10.py \
        --workdir=workdirs/classwise_cifar10   # its cifar10_jpg/cifar10_jpg.tar.gz: {train,test}/<class>/*.jpg
    # or --config.data.dir=/path/to/folder/of/the/tarball, or --config.data.path=/path/to/cifar10_jpg.tar.gz

CIFAR ResNet-18, 60 epochs per run (SGD momentum 0.9, lr 0.1, weight decay 5e-4, cosine), RRC at
s = 0.08, 0.2, 0.4, 0.6, 0.8, 1.0 plus random flips, 3 seeds (18 runs + 3 intervention runs). Cost: about
12 minutes per run on one H100-class GPU, 4-5 hours in all; impractical on 2 CPU cores (use
--config.training.num_epochs and --config.sweep.* to shrink it). Expect about 94-95% average accuracy at the
best s with the JPEG-re-encoded copy (not exactly comparable to papers); cat / dog and automobile / truck are
the classic fine-grained pairs (grouped below).
"""

from jaxlab.config import EVAL_FINAL_ONLY
from jaxlab.experiments import base_config


def get_config():
    config = base_config("augmentation_sweep")
    config.data.source = "cifar10_jpg"
    config.model.name = "resnet18_cifar"
    config.training.batch_size = 128
    config.training.num_epochs = 60
    config.optimizer.learning_rate = 0.1
    config.optimizer.base_batch_size = 128
    config.optimizer.weight_decay = 5e-4
    config.schedule.warmup_epochs = 1.0
    config.augment.pipeline = ("rrc(size=32, scale=(crop_scale, 1.0))|flip_lr"
                               "|normalize(mean=(0.4914, 0.4822, 0.4465), std=(0.247, 0.243, 0.261))")
    config.augment.eval_pipeline = "normalize(mean=(0.4914, 0.4822, 0.4465), std=(0.247, 0.243, 0.261))"
    config.augment.tables = {"crop_scale": {"default": 1.0}}
    config.sweep.strengths = (0.08, 0.2, 0.4, 0.6, 0.8, 1.0)
    config.sweep.seeds = (0, 1, 2)
    # airplane, automobile, bird, cat, deer, dog, frog, horse, ship, truck: cat/dog, automobile/truck, deer/horse
    config.classwise.class_groups = (0, 1, 2, 3, 4, 3, 5, 4, 6, 1)
    config.eval_every_steps = EVAL_FINAL_ONLY  # evaluate once, after the last step
    config.log_every_steps = 100
    return config
