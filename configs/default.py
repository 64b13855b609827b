"""Default run: a small CNN on scikit-learn's embedded digits (8x8, 10 classes).

    python -m jaxlab.main                       # same as --config=configs/default.py --workdir=workdirs/default

Trains for 30 epochs (about 340 steps at batch 128) and prints a per-class accuracy
table; expect about 97-99% test accuracy in well under 3 minutes on 2 CPU cores.
Results land in the workdir: summary.json, per_class.csv, predictions.npz,
metrics/eval JSONL and checkpoints (rerunning resumes).
"""

from jaxlab.config import base_config


def get_config():
    config = base_config()
    config.data.source = "digits"
    config.model.name = "cnn"
    config.training.batch_size = 128
    config.training.num_epochs = 30
    config.optimizer.name = "momentum"
    config.optimizer.learning_rate = 0.1
    config.optimizer.weight_decay = 5e-4
    config.schedule.name = "cosine"
    config.schedule.warmup_epochs = 1.0
    config.eval_batch_size = 512
    config.log_every_steps = 10
    return config
