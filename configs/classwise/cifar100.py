"""Class-level effects of random-resized-crop strength on CIFAR-100 (ResNet-18; accelerators).

    tfds build cifar100 --file_format=array_record        # once (needs `pip install 'jaxlab[tf]'`)
    python -m jaxlab.main --config=configs/classwise/cifar100.py --workdir=workdirs/classwise_cifar100

CIFAR ResNet-18, 200 epochs per run (SGD momentum 0.9, lr 0.1, weight decay 5e-4, cosine), RRC at
s = 0.08, 0.2, 0.4, 0.6, 0.8, 1.0 with random flips, 3 seeds: 18 runs + 3 intervention runs, about 40 minutes per
run on one H100-class GPU (~14 GPU-hours). The 20 superclasses are the class hierarchy, so superclass siblings
(maple / oak / palm / pine / willow, ...) are the fine-grained candidates. Expect about 76-78% average accuracy.
"""

from jaxlab.config import EVAL_FINAL_ONLY
from jaxlab.experiments import base_config

# CIFAR-100 fine label -> coarse label (superclass), in tfds / the original dataset's label order.
CIFAR100_SUPERCLASS = (4, 1, 14, 8, 0, 6, 7, 7, 18, 3, 3, 14, 9, 18, 7, 11, 3, 9, 7, 11, 6, 11, 5, 10, 7, 6, 13, 15,
                       3, 15, 0, 11, 1, 10, 12, 14, 16, 9, 11, 5, 5, 19, 8, 8, 15, 13, 14, 17, 18, 10, 16, 4, 17, 4,
                       2, 0, 17, 4, 18, 17, 10, 3, 2, 12, 12, 16, 12, 1, 9, 19, 2, 10, 0, 1, 16, 12, 9, 13, 15, 13,
                       16, 19, 2, 4, 6, 19, 5, 5, 8, 19, 18, 1, 2, 15, 6, 0, 17, 8, 14, 13)


def get_config():
    config = base_config("augmentation_sweep")
    config.data.source = "tfds"
    config.data.name = "cifar100"
    config.model.name = "resnet18_cifar"
    config.training.batch_size = 128
    config.training.num_epochs = 200
    config.optimizer.learning_rate = 0.1
    config.optimizer.base_batch_size = 128
    config.optimizer.weight_decay = 5e-4
    config.schedule.warmup_epochs = 1.0
    config.augment.pipeline = ("rrc(size=32, scale=(crop_scale, 1.0))|flip_lr"
                               "|normalize(mean=(0.507, 0.487, 0.441), std=(0.267, 0.256, 0.276))")
    config.augment.eval_pipeline = "normalize(mean=(0.507, 0.487, 0.441), std=(0.267, 0.256, 0.276))"
    config.augment.tables = {"crop_scale": {"default": 1.0}}
    config.sweep.strengths = (0.08, 0.2, 0.4, 0.6, 0.8, 1.0)
    config.sweep.seeds = (0, 1, 2)
    config.classwise.class_groups = CIFAR100_SUPERCLASS
    config.classwise.intervention_pairs = 5
    config.eval_every_steps = EVAL_FINAL_ONLY  # evaluate once, after the last step
    config.log_every_steps = 100
    return config
