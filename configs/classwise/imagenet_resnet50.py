"""The paper's main experiment: ImageNet ResNet-50 across RRC strengths, scored with ReaL multi-labels.

    tfds build imagenet2012 --file_format=array_record --manual_dir=/path/to/ILSVRC2012_tars   # once
    python -m jaxlab.main --config=configs/classwise/imagenet_resnet50.py --workdir=gs://.../classwise_in1k \
        --config.classwise.real_json=/path/to/real.json     # eval examples matched to it by their file_name
    # several machines: add --config.sweep.num_shards=N --config.sweep.shard_index=i (launch/sweep_array.sbatch)
    # from an ImageFolder tree (<dir>/train/<wnid>/*.JPEG, <dir>/val/<wnid>/*.JPEG) instead of tfds:
    #   --config.data.source=image_folder --config.data.dir=/path/to/imagenet --config.data.eval_split=val

Protocol (Kirichenko et al. 2023; details they do not state are the config's choices): ResNet-50, 88 epochs,
batch 1024, SGD Nesterov momentum 0.9, lr 0.1 x batch/256 with 5 warm-up epochs and cosine decay, weight decay
1e-4 (not on BN/bias), label smoothing 0.1, bf16; train augmentation RRC(224, scale=(s, 1)) +
flip, s in {0.08, 0.1, 0.2, 0.3, 0.4, 0.6, 0.8, 1.0}, 3 seeds; eval resize 256 + centre crop 224. As in
torchvision and the paper, the crop window is sampled on the ORIGINAL image (size and aspect ratio) by the host
input pipeline (jaxlab.data.loader: JPEGs decoded in config.data.workers processes, each example's crop
strength looked up by its label in the sweep's table, config.data.rrc_scale_table), then resized to 224; flip
and normalisation run on the device. Evaluation decodes, resizes the shorter side to 256 and centre-crops 224
on the host. Host input
measured at ~470 images/s per decoding core (benchmarks/README.md, "Input pipeline": 2-core CPU machine,
ImageNet-sized JPEGs, batches of 256), so one H100 at 5,662 images/s needs ~12 cores (config.data.workers,
default: every core), an 8-GPU node ~100. Cost: at least 1.28M x 88 / 5,700 images/s ~ 5.5 hours
per run on one H100 (the train step alone, measured: benchmarks/README.md; evaluation, checkpoints and an
input pipeline short of ~12 cores add to it), >= 130 H100-hours for the 24 runs plus 3 intervention runs; on 8
GPUs each run takes about an hour if the host keeps up. Expected: ~76-77% top-1 at s = 0.08, a few points
lower at s = 1; ReaL accuracy ~83%; single classes (e.g. barn spider) drop by up to 20 points with strong crops.
The class hierarchy for the fine-grained category is WordNet's (real_labels.imagenet_class_groups: the largest
WordNet subtree holding the class and at most 30 of the 1,000 classes, e.g. terrier, hound, feline, snake).
"""

from jaxlab.classwise.real_labels import imagenet_class_groups
from jaxlab.config import EVAL_FINAL_ONLY
from jaxlab.experiments import base_config


def get_config():
    config = base_config("augmentation_sweep")
    config.data.source = "tfds_jpeg"  # ArrayRecord records, JPEG bytes decoded by the loader's workers
    config.data.name = "imagenet2012"
    config.data.eval_split = "validation"
    config.data.image_size = 224      # the host crop's output; evaluation: resize 256, centre crop 224
    config.data.rrc_scale_table = "crop_scale"
    config.model.name = "resnet50_imagenet"
    config.model.dtype = "bfloat16"
    config.training.batch_size = 1024
    config.training.num_epochs = 88
    config.training.label_smoothing = 0.1
    config.optimizer.name = "nesterov"
    config.optimizer.learning_rate = 0.1
    config.optimizer.base_batch_size = 256
    config.optimizer.lr_scaling = "linear"
    config.optimizer.weight_decay = 1e-4
    config.schedule.warmup_epochs = 5.0
    mean_std = "mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225)"
    config.augment.pipeline = f"flip_lr|normalize({mean_std})"  # after the host's random-resized crop
    config.augment.eval_pipeline = f"normalize({mean_std})"
    config.augment.tables = {"crop_scale": {"default": 1.0}}
    config.sweep.strengths = (0.08, 0.1, 0.2, 0.3, 0.4, 0.6, 0.8, 1.0)
    config.sweep.seeds = (0, 1, 2)
    config.classwise.class_groups = imagenet_class_groups()  # classes in sorted-wnid order, as tfds and ImageFolder
    config.classwise.intervention_pairs = 10
    config.eval_batch_size = 1024
    config.eval_every_steps = EVAL_FINAL_ONLY  # evaluate once, after the last step
    config.log_every_steps = 100
    config.checkpoint_every_steps = 2000
    return config
