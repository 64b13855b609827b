"""DReg vs its controls and tuned large-batch baselines on Fashion-MNIST, powered for a 2-core CPU (experiment
"dreg_study").

    JAXLAB_DATA_DIR=/path/to/datasets python -m jaxlab.main \\
        --config=configs/dreg/fashion_mnist_study.py --workdir=workdirs/dreg_fashion_mnist
    # the 4 IDX .gz files in $JAXLAB_DATA_DIR/fashion_mnist/ (or --config.data.dir=/path/to/fashion_mnist)

Question: does DReg close any of the large-batch gap, beyond what its two controls (B1, B2) explain?

Sizes, chosen by measurement: all 60,000 training images at 14x14, the first 55,000 to train and the last 5,000 as
the validation split the tuned methods are picked on, all 10,000 test images; an MLP 196-256-10 (no BatchNorm, so
the run does not depend on the device count: one device is fastest here); 30 epochs at every batch size (12,870 /
390 / 180 steps at 128 / 4096 / 8192). Pilots (seed 0, then two seeds of the whole grid with linear scaling):
batch 128 reaches 0.875; square-root scaling 0.85 at 4096 and 0.84 at 8192 (a gap of 2.5-3.5 points); linear
scaling (Goyal et al.) 0.82 at 4096 but 0.14-0.28 at 8192, and with the copy's doubled classifier LR on top of it
B1, B2 and DReg fell to 0.55-0.69 +- 0.03-0.16 at 4096: a comparison of divergences, not of generalisation. So
the base recipe, the one DReg is added to, uses square-root scaling, and linear scaling is one of B3's candidates.

Methods (SGD momentum 0.9, weight decay 5e-4 on kernels only, cosine decay, lr 0.05 at batch 128):
- B0: square-root LR scaling (0.28 at 4096, 0.4 at 8192), 1-epoch linear warm-up.
- B1: no copy; the replicated layer reparametrised W = sqrt(2) V (jaxlab.dreg.Matched): the summed copies'
  effective LR (2x), weight-decay rate and initial variance (2x); B0's recipe.
- B2: the copy (sum, independent init) with lambda = 0; B0's recipe.
- DReg: the copy with lambda cos(W1, W2)^2; B0's recipe. Tuned: lambda in {1e-4, 1e-3, 3e-3, 1e-2, 3e-2, 0.1, 0.3, 1}
  x layer in {classifier, hidden Dense_0}: 16 candidates. B1 and B2 replicate the layer DReg was tuned to.
- B3: tuned SGD: heavy-ball or Nesterov momentum x linear or sqrt scaling x warm-up of 0, 1, 2 or 5 epochs:
  16 candidates (Nado et al. 2021: tuned momentum is a strong large-batch baseline); B0's recipe is one of them.
- B4: LARS (BN scales and biases have no trust ratio nor decay), sqrt scaling, 1-epoch warm-up, cosine: base lr
  in {0.0625, 0.125, 0.25, 0.5} x trust coefficient in {0.0025, 0.005, 0.01, 0.02}: 16 candidates.
Every tuned method gets the same budget: 16 candidates, each trained once (seed 0) at batch 4096 and at 8192 and
scored by its mean final accuracy on the validation split. B3 and B4 run at the large batches only.
Grid: 5 seeds; B0, B1, B2 and DReg at 128, 4096 and 8192, B3 and B4 at 4096 and 8192 (80 runs, after 96 tuning
runs). results.md gives per batch size the gap (B0 at 128 minus B0 there, paired by seed, 95% t interval), each
method minus B0 with the share of the gap it closes, DReg minus every other method, and the verdict: whether DReg
closes part of the gap beyond B1 and B2 (both intervals above 0). Writes results.json, results.md,
convergence.png and differences.png (jaxlab.experiments.dreg_study); the committed run and its wall time are in
benchmarks/README.md (DReg) and benchmarks/results/dreg_fashion_mnist/.
"""

from jaxlab.experiments import base_config

DREG_COEFFICIENTS = (1e-4, 1e-3, 3e-3, 1e-2, 3e-2, 1e-1, 3e-1, 1.0)
DREG_LAYERS = {"classifier": "", "hidden": "Dense_0"}
LARS_LEARNING_RATES = (0.0625, 0.125, 0.25, 0.5)
LARS_TRUST_COEFFICIENTS = (0.0025, 0.005, 0.01, 0.02)
WARMUP_EPOCHS = (0, 1, 2, 5)
LARGE_BATCHES = (4096, 8192)


def _name(value: float) -> str:
    """A config-key-safe spelling of a number: 0.0625 -> '0p0625' (ConfigDict keys take no dots)."""
    return f"{value:g}".replace(".", "p")


def get_config():
    config = base_config("dreg_study")
    config.data.source = "fashion_mnist"
    config.data.image_size = 14
    config.model.name = "mlp"
    config.model.hidden_sizes = (256,)
    config.training.num_epochs = 30.0
    config.optimizer.name = "momentum"
    config.optimizer.learning_rate = 0.05
    config.optimizer.base_batch_size = 128
    config.optimizer.lr_scaling = "sqrt"
    config.optimizer.weight_decay = 5e-4
    config.schedule.name = "cosine"
    config.schedule.warmup_epochs = 1.0
    config.dreg.update(combine="sum", init="independent", penalty="squared_cosine")
    config.eval_batch_size = 1000
    config.log_every_steps = 200
    config.checkpoint_every_steps = 1_000_000  # one checkpoint per run, at its end (the study resumes per run)
    config.keep_checkpoints = 1
    config.dreg_study.update(
        methods=("B0", "B1", "B2", "DReg", "B3", "B4"),
        subject="DReg",
        overrides={
            "B0": {},
            "B1": {"dreg": {"enabled": True, "matched_single": True}},
            "B2": {"dreg": {"enabled": True, "coefficient": 0.0}},
            "DReg": {"dreg": {"enabled": True}},
            "B3": {},
            "B4": {"optimizer": {"name": "lars", "lr_scaling": "sqrt"}},
        },
        candidates={
            "DReg": {f"{layer_name}_lambda{_name(value)}": {"dreg": {"layer": layer, "coefficient": value}}
                     for layer_name, layer in DREG_LAYERS.items() for value in DREG_COEFFICIENTS},
            "B3": {f"{optimizer}_{scaling}_warmup{warmup}": {
                       "optimizer": {"name": optimizer, "lr_scaling": scaling},
                       "schedule": {"warmup_epochs": float(warmup)}}
                   for optimizer in ("momentum", "nesterov") for scaling in ("linear", "sqrt")
                   for warmup in WARMUP_EPOCHS},
            "B4": {f"lr{_name(lr)}_trust{_name(trust)}": {
                       "optimizer": {"learning_rate": lr, "trust_coefficient": trust}}
                   for lr in LARS_LEARNING_RATES for trust in LARS_TRUST_COEFFICIENTS},
        },
        layer_follows={"B1": "DReg", "B2": "DReg"},
        method_batch_sizes={"B3": LARGE_BATCHES, "B4": LARGE_BATCHES},
        batch_sizes=(128,) + LARGE_BATCHES,
        seeds=(0, 1, 2, 3, 4),
        sweep_batch_sizes=LARGE_BATCHES,
        sweep_seeds=(0,),
        train_examples=55_000,
        validation_examples=5_000,
        test_examples=0,
        target_accuracy=0.85,
    )
    return config
