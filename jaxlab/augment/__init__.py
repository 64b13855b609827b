"""Pure-function, on-device augmentation with per-example and class-conditional strength.

Random per-example ops are `op(key, image, **params) -> image`, deterministic ones `op(image, **params)`, batch
ops `op(key, images, targets, **params) -> (images, targets)` (all jit/vmap/shard-safe; parameters may be traced
per-example values); `build_pipeline` compiles a config string of ops into `pipeline(keys, images, labels)`, one
key per example, the function the train step calls. See jaxlab/augment/pipeline.py for the pipeline syntax.
"""

from jaxlab.augment.ops import (center_crop_and_resize, color_jitter, cutmix, denormalize, grayscale, mixup,
                                mixup_cutmix, normalize, pad_and_random_crop, random_flip_left_right,
                                random_flip_up_down, random_grayscale)
from jaxlab.augment.pipeline import (OPS, PerClass, PipelineError, build_eval_transform, build_pipeline,
                                     check_output_shapes, check_stage, examples_per_chunk_for, parse_pipeline,
                                     per_class_table, target_smoothing)
from jaxlab.augment.rrc import random_resized_crop, rrc_params

__all__ = [
    "OPS", "PerClass", "PipelineError", "build_eval_transform", "build_pipeline", "center_crop_and_resize",
    "check_output_shapes", "check_stage", "color_jitter", "cutmix", "denormalize", "examples_per_chunk_for",
    "grayscale", "mixup", "mixup_cutmix", "normalize", "pad_and_random_crop", "parse_pipeline", "per_class_table",
    "random_flip_left_right", "random_flip_up_down", "random_grayscale", "random_resized_crop", "rrc_params",
    "target_smoothing",
]
