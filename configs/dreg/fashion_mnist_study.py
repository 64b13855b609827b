"""DReg vs its controls on Fashion-MNIST at batch 128 / 4096 / 8192, sized for a 2-core CPU (experiment "dreg_study").

    JAXLAB_DATA_DIR=/path/to/datasets XLA_FLAGS=--xla_force_host_platform_device_count=8 python -m jaxlab.main \\
        --config=configs/dreg/fashion_mnist_study.py --workdir=workdirs/dreg_fashion_mnist
    # the 4 IDX .gz files in $JAXLAB_DATA_DIR/fashion_mnist/ (or --config.data.dir=/path/to/fashion_mnist)

On an oversubscribed CPU the simulated devices' all-reduce can wait longer than XLA's default limit and abort
the process ("AwaitAndLogIfStuck"); add --xla_cpu_collective_call_terminate_timeout_seconds=7200 and
--xla_cpu_collective_timeout_seconds=7200 to XLA_FLAGS there (the run here did).

Writes results.json and convergence.png (jaxlab.experiments.dreg_study). Sizes: images resized to 14x14, the first
16,384 training images (8,192 x 2, so batch 8192 takes 2 steps per epoch), the next 4,096 as the validation
split for the tuned methods, the first 5,000 test images; CNN width 4 (conv 4-8-8, BN, global pool,
Dense 8 -> 10: the replicated classifier); 3 epochs at every batch size (384 / 12 / 6 steps); 3 seeds;
eight simulated devices (per-device BatchNorm statistics, model.bn_sync=False).

Methods (every one: SGD momentum 0.9, weight decay 5e-4 on kernels only, cosine decay, lr 0.05 at batch 128):
- B0: the CNN with Goyal et al.'s recipe, the base DReg is applied to: linear LR scaling (lr 0.05 B / 128,
  3.2 at 8192) with a 1-epoch linear warm-up.
- B1: no copy; the classifier reparametrised W = sqrt(2) V (jaxlab.dreg.Matched) so its effective LR (2x),
  weight-decay rate and initial variance (2x) match the summed independent copies; same recipe as B0.
- B2: the copy (sum, independent init) with lambda = 0; same recipe.
- DReg: the copy with lambda cos(W1, W2)^2; lambda in {0.1, 1} picked on the validation split at batch
  8192 (seed 0); same recipe.
- B3: tuned large-batch SGD momentum: linear (= B0) vs sqrt scaling, both with the 1-epoch warm-up and cosine
  decay, picked on the validation split at batch 8192.
- B4: LARS (trust coefficient 0.001, BN scales / biases masked out of the trust ratio and decay), 1-epoch
  warm-up, cosine, sqrt scaling; base lr 1 or 4 (8 or 32 at batch 8192) picked on the validation split.
The grid runs a seed at a time (all methods and batch sizes of seed 0, then seed 1, ...).
Measured on the 2-core CPU machine (shared, load average 11-19): 1,775 s (29.6 min) wall for the 7 tuning runs
and the 54 grid runs, compilation included; first-of-a-kind runs 20-80 s, cached ones 13-25 s. Results
(benchmarks/README.md, DReg; benchmarks/results/dreg_fashion_mnist/): DReg = the copy without penalty (B2) at
every batch size; the copy's gain at batch 128 is matched by B1; at 4096 / 8192 nothing trains well in 12 / 6 steps.
"""

from jaxlab.experiments import base_config


def get_config():
    config = base_config("dreg_study")
    config.data.source = "fashion_mnist"
    config.data.image_size = 14
    config.model.name = "cnn"
    config.model.width = 4
    config.model.bn_sync = False
    config.training.num_epochs = 3.0
    config.optimizer.name = "momentum"
    config.optimizer.learning_rate = 0.05
    config.optimizer.base_batch_size = 128
    config.optimizer.lr_scaling = "linear"
    config.optimizer.weight_decay = 5e-4
    config.schedule.name = "cosine"
    config.schedule.warmup_epochs = 1.0
    config.dreg.update(combine="sum", init="independent", penalty="squared_cosine")
    config.eval_batch_size = 1000
    config.log_every_steps = 64
    config.checkpoint_every_steps = 1_000_000  # one checkpoint per run, at its end (the study resumes per run)
    config.keep_checkpoints = 1
    config.dreg_study.update(
        methods=("B0", "B1", "B2", "DReg", "B3", "B4"),
        overrides={
            "B0": {},
            "B1": {"dreg": {"enabled": True, "matched_single": True}},
            "B2": {"dreg": {"enabled": True, "coefficient": 0.0}},
            "DReg": {"dreg": {"enabled": True}},
            "B3": {},
            "B4": {"optimizer": {"name": "lars", "lr_scaling": "sqrt"}},
        },
        candidates={
            "DReg": {f"lambda_{name}": {"dreg": {"coefficient": value}}
                     for name, value in (("1e-1", 1e-1), ("1", 1.0))},
            "B3": {"linear": {"optimizer": {"lr_scaling": "linear"}}, "sqrt": {"optimizer": {"lr_scaling": "sqrt"}}},
            "B4": {"lr_1": {"optimizer": {"learning_rate": 1.0}}, "lr_4": {"optimizer": {"learning_rate": 4.0}}},
        },
        batch_sizes=(128, 4096, 8192),
        seeds=(0, 1, 2),
        sweep_batch_sizes=(8192,),
        sweep_seeds=(0,),
        train_examples=16384,
        validation_examples=4096,
        test_examples=5000,
        target_accuracy=0.7,
    )
    return config
