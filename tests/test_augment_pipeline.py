"""Pipelines: parsing, per-class tables, class-conditional behaviour, and use inside the train step."""

import json

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxlab import parallel
from jaxlab.augment import (PipelineError, build_eval_transform, build_pipeline, check_output_shapes,
                            examples_per_chunk_for, parse_pipeline, per_class_table, target_smoothing)
from jaxlab.errors import ConfigError
from jaxlab.train import train_and_evaluate
from tests.helpers import tiny_config


def _keys(n, seed=0):
    return jax.random.split(jax.random.PRNGKey(seed), n)


def test_string_and_list_forms_parse_the_same():
    text = parse_pipeline("rrc(size=8, scale=(table([0.08, 1.0]), 1.0))|flip_lr(p=0.25)|normalize(mean=(0.5,), "
                          "std=(0.2,))", 2)
    listed = parse_pipeline([{"op": "rrc", "size": 8, "scale": ("table([0.08, 1.0])", 1.0)},
                             {"op": "flip_lr", "p": 0.25}, {"op": "normalize", "mean": (0.5,), "std": (0.2,)}], 2)
    assert [s.name for s in text] == ["rrc|flip_lr", "normalize"]  # the flip is fused into the crop
    np.testing.assert_allclose(text[0].params["scale"][0].values, [0.08, 1.0], rtol=1e-7)
    assert text[0].params["scale"][1] == 1.0 and text[0].params["flip_p"] == 0.25
    assert len(listed) == 2 and listed[0].params["flip_p"] == 0.25 and listed[1].params == text[1].params
    # a "table(...)" string inside a tuple parses to the same table
    np.testing.assert_allclose(listed[0].params["scale"][0].values, [0.08, 1.0], rtol=1e-7)
    assert listed[0].params["scale"][1] == 1.0


def test_per_class_tables_from_list_dict_json_and_names(tmp_path):
    np.testing.assert_array_equal(per_class_table([1, 2, 3], 3).values, [1, 2, 3])
    np.testing.assert_allclose(per_class_table({"1": 0.5, "default": 0.08}, 3).values, [0.08, 0.5, 0.08], rtol=1e-7)
    (tmp_path / "t.json").write_text(json.dumps({"0": 1.0, "2": 1.0, "default": 0.3}))
    np.testing.assert_allclose(per_class_table(str(tmp_path / "t.json"), 3).values, [1.0, 0.3, 1.0], rtol=1e-7)
    stages = parse_pipeline("flip_lr(p=weak)", 3, tables={"weak": [0.0, 0.5, 1.0]})
    np.testing.assert_array_equal(stages[0].params["p"].values, [0.0, 0.5, 1.0])


@pytest.mark.parametrize("spec, message", [
    ("rotate(angle=3)", "unknown augmentation op 'rotate'"),
    ("flip_lr(p=table([0.5]))", "1 values for 3 classes"),
    ("flip_lr(p=table({'1': 0.5}))", "no 'default'"),
    ("flip_lr(p=strong)", "unknown name 'strong'"),
    ("flip_lr(p=0.5", "cannot parse"),
    ("mixup(alpha=table([0.1, 0.2, 0.3]))", "only apply to per-example ops"),
    ("flip_lr(p=table('/nonexistent/t.json'))", "cannot read the per-class table"),
])
def test_bad_pipelines_raise_config_errors(spec, message):
    with pytest.raises(ConfigError, match=message) as info:
        parse_pipeline(spec, 3)
    assert info.value.field == "augment.pipeline"


def test_eval_pipeline_rejects_random_ops():
    with pytest.raises(PipelineError, match="deterministic") as info:
        build_eval_transform("flip_lr|normalize(mean=(0.5,), std=(0.5,))", 10)
    assert info.value.field == "augment.eval_pipeline"
    transform = build_eval_transform("normalize(mean=(0.5,), std=(0.25,))", 10)
    np.testing.assert_allclose(transform(jnp.full((2, 4, 4, 1), 0.75)), 1.0)
    assert build_eval_transform("", 10) is None


def test_crop_then_flip_runs_as_one_fused_stage():
    """rrc|flip_lr equals random_resized_crop(..., flip_p) with the stage's key; flips still happen per example."""
    from jaxlab.augment import random_resized_crop

    stages = parse_pipeline("rrc(size=8, scale=(0.3, 1.0))|flip_lr(p=table([0.0, 1.0]))", 2)
    assert len(stages) == 1 and stages[0].params["size"] == 8
    augment = jax.jit(build_pipeline("rrc(size=8, scale=(0.3, 1.0))|flip_lr(p=table([0.0, 1.0]))", 2))
    images = jax.random.uniform(jax.random.PRNGKey(4), (6, 8, 8, 3))
    labels = jnp.arange(6) % 2
    out, _ = augment(_keys(6), images, labels)
    stage_keys = jax.vmap(jax.random.fold_in, (0, None))(_keys(6), 0)
    for i in range(6):
        expected = random_resized_crop(stage_keys[i], images[i], size=8, scale=(0.3, 1.0), flip_p=float(labels[i]))
        np.testing.assert_allclose(out[i], expected, atol=1e-6)
        unflipped = random_resized_crop(stage_keys[i], images[i], size=8, scale=(0.3, 1.0), flip_p=0.0)
        np.testing.assert_allclose(out[i], unflipped if labels[i] == 0 else unflipped[:, ::-1], atol=1e-6)


def test_class_conditional_flip_is_per_example():
    """p = 0 for class 0 and p = 1 for class 1: class-0 images untouched, class-1 images flipped, exactly."""
    augment = jax.jit(build_pipeline("flip_lr(p=table([0.0, 1.0]))", 2))
    images = jax.random.uniform(jax.random.PRNGKey(1), (16, 5, 5, 3))
    labels = jnp.arange(16) % 2
    out, targets = augment(_keys(16), images, labels)
    chex.assert_trees_all_equal((out[0::2], out[1::2], targets),
                                (images[0::2], images[1::2, :, ::-1], jax.nn.one_hot(labels, 2)))


def test_class_conditional_rrc_strength():
    """scale=(1,1) for class 0 keeps the whole image (torchvision's fallback); s=0.08 for class 1 crops."""
    augment = jax.jit(build_pipeline("rrc(size=16, scale=(table([1.0, 0.08]), table([1.0, 1.0])))", 2))
    images = jax.random.uniform(jax.random.PRNGKey(2), (64, 16, 16, 3))
    labels = jnp.arange(64) % 2
    out, _ = augment(_keys(64), images, labels)
    changed = np.abs(np.asarray(out - images)).reshape(64, -1).max(axis=1) > 1e-4
    assert changed[0::2].mean() < 0.1   # whole image kept unless aspect ~ 1 lets a full crop through
    assert changed[1::2].mean() > 0.9   # random crops


def test_same_keys_same_output_and_mixup_targets():
    augment = jax.jit(build_pipeline("flip_lr|mixup(alpha=0.4)", 3))
    images = jax.random.uniform(jax.random.PRNGKey(3), (8, 4, 4, 1))
    labels = jnp.array([0, 1, 2, 0, 1, 2, 0, 1])
    a_images, a_targets = augment(_keys(8), images, labels)
    b_images, b_targets = augment(_keys(8), images, labels)
    np.testing.assert_array_equal(a_images, b_images)
    np.testing.assert_allclose(a_targets.sum(-1), 1.0, rtol=1e-6)
    assert np.any((a_targets > 0) & (a_targets < 1)), "mixup must mix labels"


@pytest.mark.parametrize("spec", ["mixup(alpha=0.4)", "cutmix(alpha=1.0)", "mixup_cutmix(switch_prob=0.5)"])
def test_batch_ops_mix_within_each_device_shard(spec):
    """Under jit(shard_map) over 8 devices (the train step's setting) a batch op mixes each device's shard of 4
    with itself, with that shard's first key: the same as the pipeline run on each shard alone."""
    augment = build_pipeline("flip_lr|" + spec, 5)
    mesh = parallel.make_mesh(8)
    sharded = parallel.data_parallel(augment, mesh, in_specs=(parallel.BATCH,) * 3, out_specs=parallel.BATCH)
    images = jax.random.uniform(jax.random.PRNGKey(5), (32, 6, 6, 3))
    labels, keys = jnp.arange(32) % 5, _keys(32, seed=6)
    out, targets = sharded(keys, images, labels)
    per_shard = [jax.jit(augment)(keys[i:i + 4], images[i:i + 4], labels[i:i + 4]) for i in range(0, 32, 4)]
    chex.assert_trees_all_close((out, targets), jax.tree.map(lambda *xs: jnp.concatenate(xs), *per_shard),
                                rtol=1e-6, atol=1e-6)
    assert np.any((np.asarray(targets) > 0.1) & (np.asarray(targets) < 0.9)), "the targets must be mixed"


@pytest.mark.parametrize("chunk", [3])  # 10 = 3 chunks of 3 + a remainder of 1
def test_chunked_examples_match_one_vmap(chunk):
    """Running the per-example stages over chunks (lax.map) gives the vmapped result, remainder included."""
    spec = ("rrc(size=8, scale=(table([0.08, 1.0]), 1.0))|flip_lr|color_jitter(hue=table([0.0, 0.2]))"
            "|mixup(alpha=0.4)|normalize(mean=(0.5,), std=(0.25,))")
    images = jax.random.uniform(jax.random.PRNGKey(4), (10, 12, 12, 3))
    labels = jnp.arange(10) % 2
    whole = jax.jit(build_pipeline(spec, 2, examples_per_chunk=10))(_keys(10), images, labels)
    chunked = jax.jit(build_pipeline(spec, 2, examples_per_chunk=chunk))(_keys(10), images, labels)
    chex.assert_trees_all_close(whole, chunked, rtol=1e-7, atol=2e-6)
    assert not np.allclose(whole[0][0], whole[0][1])


def test_automatic_chunk_size():
    assert examples_per_chunk_for((224, 224, 3), 4, requested=5) == 5
    on_cpu = jax.default_backend() == "cpu"
    assert examples_per_chunk_for((224, 224, 3), 4) == (2 if on_cpu else None)
    assert examples_per_chunk_for((32, 32, 3), 4) == (128 if on_cpu else None)
    assert examples_per_chunk_for((2048, 2048, 3), 4) == (1 if on_cpu else None)
    assert examples_per_chunk_for((224, 224, 3), 4, multipass=False) is None  # single-pass ops: one vmap
    with pytest.raises(PipelineError, match="examples_per_chunk"):
        build_pipeline("flip_lr", 2, examples_per_chunk=-1)


def test_class_conditional_pipeline_in_train_step_is_device_count_invariant(tmp_path):
    """The augmented run gives the same params on 1 and 8 devices (keys depend on step and index only)."""
    config = tiny_config(**{
        "augment.pipeline": "pad_crop(padding=1, max_shift=table([0, 1, 1, 1, 1, 1, 1, 1, 1, 1]))|flip_lr(p=weak)",
        "augment.tables": {"weak": [0.0] * 5 + [1.0] * 5},
        "augment.eval_pipeline": "normalize(mean=(0.3,), std=(0.3,))",
        "training.num_train_steps": 4})
    one = train_and_evaluate(config, str(tmp_path / "one"), mesh=parallel.make_mesh(1))
    eight = train_and_evaluate(config, str(tmp_path / "eight"), mesh=parallel.make_mesh(8))
    chex.assert_trees_all_close(jax.device_get(one["state"].params), jax.device_get(eight["state"].params),
                                rtol=1e-4, atol=1e-6)
    plain = train_and_evaluate(tiny_config(**{"training.num_train_steps": 4}), str(tmp_path / "plain"))
    assert not np.allclose(jax.tree.leaves(plain["state"].params)[1], jax.tree.leaves(one["state"].params)[1])


# --- parameters checked when the pipeline is built (torchvision's rules) ---

@pytest.mark.parametrize("spec, message", [
    ("rrc(size=8, scale=(1.5, 0.5))", r"rrc: scale=\(1.5, 0.5\) is invalid: .*0 < lo <= hi"),
    ("rrc(size=8, scale=(0, 0))", r"rrc: scale=\(0, 0\) is invalid"),
    ("rrc(size=8, scale=(-1, 0.5))", r"rrc: scale=\(-1, 0.5\) is invalid"),
    ("rrc(size=8, ratio=(0, 1))", r"rrc: ratio=\(0, 1\) is invalid: .*0 < lo <= hi"),
    ("rrc(size=8, ratio=(2.0, 0.5))", r"rrc: ratio=\(2.0, 0.5\) is invalid"),
    ("rrc(size=8, scale=0.5)", r"rrc: scale=0.5 is invalid: must be \(scale_lo, scale_hi\)"),
    ("rrc(size=0)", r"rrc: size=0 is invalid: must be a positive int"),
    ("rrc(size=(8, -1))", r"rrc: size=\(8, -1\) is invalid"),
    ("rrc(size=8.5)", r"rrc: size=8.5 is invalid"),
    ("random_resized_crop(size=8, flip_p=2)", r"random_resized_crop: flip_p=2 is invalid: must be in \[0, 1\]"),
    ("rrc(size=8, scale=(table([0.5, 1.0, 2.0]), 1.0))",
     r"scale=\(table\(\[0.5, 1, 2\]\), 1.0\) .*\(class 2: lo=2, hi=1\)"),
    ("rrc(size=8, scale=(0.5, table([1.0, 0.1, 1.0])))", r"rrc: scale=.*class 1: lo=0.5, hi=0.1"),
    ("rrc(size=8, scale=(table([0.5, 0.0, 1.0]), 1.0))", r"class 1: lo=0, hi=1"),
    ("pad_crop(padding=-1)", r"pad_crop: padding=-1 is invalid: must be an int >= 0"),
    ("pad_crop(padding=table([1, 2, 3]))", r"padding=table.*no per-class table"),
    ("pad_crop(padding=2, max_shift=-1)", r"pad_crop: max_shift=-1 is invalid: must be >= 0"),
    ("pad_crop(padding=2, max_shift=table([1, -1, 0]))", r"max_shift=table.* must be >= 0 \(class 1: -1\)"),
    ("pad_crop(padding=2, mode='wrapped')", r"pad_crop: mode='wrapped' is invalid: must be one of"),
    ("flip_lr(p=1.5)", r"flip_lr: p=1.5 is invalid: must be in \[0, 1\]"),
    ("flip_ud(p=-0.1)", r"flip_ud: p=-0.1 is invalid: must be in \[0, 1\]"),
    ("flip_lr(p=table([0.5, 1.0, 1.01]))", r"flip_lr: p=table.* must be in \[0, 1\] \(class 2: 1.01\)"),
    ("grayscale(p=2)", r"grayscale: p=2 is invalid: must be in \[0, 1\]"),
    ("color_jitter(brightness=-5)", r"color_jitter: brightness=-5 is invalid: must be >= 0"),
    ("color_jitter(contrast=-0.1)", r"color_jitter: contrast=-0.1 is invalid"),
    ("color_jitter(saturation=table([0.1, -1.0, 0.2]))", r"color_jitter: saturation=table.*class 1"),
    ("color_jitter(hue=0.6)", r"color_jitter: hue=0.6 is invalid: must be in \[0, 0.5\]"),
    ("color_jitter(hue=-0.1)", r"color_jitter: hue=-0.1 is invalid"),
    ("color_jitter(brightness='a')", r"color_jitter: brightness='a' is invalid: must be a number"),
    ("normalize(mean=(0.5,), std=(0.0,))", r"normalize: std=\(0.0,\) is invalid: every std must be > 0"),
    ("normalize(mean=0.5, std=-1)", r"normalize: std=-1 is invalid"),
    ("normalize(mean=(0.5, 1e999), std=0.2)", r"normalize: mean=\(0.5, inf\) is invalid: must be finite"),
    ("normalize(mean=(0.5, 0.5), std=(0.2, 0.2, 0.2))", r"normalize: std=.* has 3 values but mean has 2"),
    ("center_crop(size=0)", r"center_crop: size=0 is invalid: must be a positive int"),
    ("center_crop(size=8, crop_ratio=0)", r"center_crop: crop_ratio=0 is invalid: must be in \(0, 1\]"),
    ("center_crop(size=8, crop_ratio=1.5)", r"center_crop: crop_ratio=1.5 is invalid"),
    ("mixup(alpha=0)", r"mixup: alpha=0 is invalid: must be > 0"),
    ("cutmix(alpha=-1.0)", r"cutmix: alpha=-1.0 is invalid: must be > 0"),
    ("mixup_cutmix(mixup_alpha=0, cutmix_alpha=0)", r"mixup_cutmix: mixup_alpha=0 is invalid: mixup_alpha or "
                                                    r"cutmix_alpha must be > 0"),
    ("mixup_cutmix(cutmix_alpha=0, mixup_alpha=0.0)", r"mixup_alpha or cutmix_alpha must be > 0"),
    ("mixup_cutmix(mixup_alpha=-0.2)", r"mixup_cutmix: mixup_alpha=-0.2 is invalid: must be >= 0"),
    ("mixup_cutmix(cutmix_alpha='a')", r"mixup_cutmix: cutmix_alpha='a' is invalid: must be a number"),
    ("mixup_cutmix(switch_prob=1.5)", r"mixup_cutmix: switch_prob=1.5 is invalid: must be in \[0, 1\]"),
    ("mixup_cutmix(mix_prob=-0.1)", r"mixup_cutmix: mix_prob=-0.1 is invalid: must be in \[0, 1\]"),
    ("mixup_cutmix(label_smoothing=1.0)", r"mixup_cutmix: label_smoothing=1.0 is invalid: must be in \[0, 1\)"),
    ("mixup_cutmix(label_smoothing=-0.1)", r"mixup_cutmix: label_smoothing=-0.1 is invalid"),
    ("mixup_cutmix(alpha=1.0)", r"mixup_cutmix has no parameter 'alpha'; its parameters are mixup_alpha, "
                                r"cutmix_alpha, switch_prob, label_smoothing, mix_prob"),
    ("flip_lr(p=table([0.5, float('nan'), 0.5]))", r"is not a literal"),
    ("flip_lr(p=table([0.5, 1e999, 0.5]))", r"per-class table values must be finite.*class 1"),
])
def test_invalid_op_parameters_fail_at_build_time(spec, message):
    """Each op's parameters are checked when the pipeline is parsed, before anything is traced."""
    with pytest.raises(PipelineError, match=message) as info:
        build_pipeline(spec, 3)
    assert info.value.field == "augment.pipeline"


@pytest.mark.parametrize("spec", [
    [{"op": "rrc", "size": 8, "scale": (1.5, 0.5)}],
    [{"op": "rrc", "size": 8, "scale": ("table([0.1, 2.0, 0.1])", 1.0)}],
    [{"op": "normalize", "mean": (float("nan"),), "std": (1.0,)}],
    [{"op": "flip_lr", "q": 0.5}],
])
def test_list_form_parameters_are_checked_too(spec):
    with pytest.raises(PipelineError):
        parse_pipeline(spec, 3)


def test_named_tables_are_checked_value_by_value():
    with pytest.raises(PipelineError, match=r"rrc: scale=.* \(class 0: lo=1.5, hi=1\)"):
        build_pipeline("rrc(size=8, scale=(crop_scale, 1.0))", 3, tables={"crop_scale": {"default": 1.5}})
    with pytest.raises(PipelineError, match="per-class table values must be finite"):
        build_pipeline("flip_lr(p=weak)", 3, tables={"weak": {"1": float("nan"), "default": 0.5}})
    build_pipeline("rrc(size=8, scale=(crop_scale, 1.0))", 3, tables={"crop_scale": {"default": 1.0}})  # lo == hi


def test_eval_pipeline_parameters_name_the_eval_field():
    with pytest.raises(PipelineError, match="normalize: std=") as info:
        build_eval_transform("normalize(mean=(0.5,), std=(0.0,))", 10)
    assert info.value.field == "augment.eval_pipeline"
    assert str(info.value).startswith("config.augment.eval_pipeline: ")
    with pytest.raises(PipelineError, match="center_crop has no parameter 'ratio'") as info:
        build_eval_transform("center_crop(size=8, ratio=0.9)", 10)
    assert info.value.field == "augment.eval_pipeline"
    with pytest.raises(ConfigError, match="unknown augmentation op 'rotate'") as info:
        build_eval_transform("rotate(angle=3)", 10)
    assert info.value.field == "augment.eval_pipeline"


def test_unknown_parameter_lists_the_op_parameters():
    with pytest.raises(PipelineError, match=r"rrc has no parameter 'sise'; its parameters are size, scale, ratio, "
                                            r"antialias, flip_p") as info:
        build_pipeline("rrc(sise=8)", 3)
    assert info.value.field == "augment.pipeline"
    with pytest.raises(PipelineError, match=r"color_jitter has no parameter 'brightnes', 'p'; its parameters are "
                                            r"brightness, contrast, saturation, hue"):
        build_pipeline([{"op": "color_jitter", "brightnes": 0.4, "p": 0.5}], 3)
    with pytest.raises(PipelineError, match=r"mixup has no parameter 'beta'; its parameters are alpha"):
        build_pipeline("mixup(beta=1)", 3)
    with pytest.raises(PipelineError, match=r"rrc needs size=\.\.\."):
        build_pipeline("rrc(scale=(0.5, 1.0))", 3)


@pytest.mark.parametrize("spec", [
    "rrc(size=8, scale=(0.08, 1.0), ratio=(0.75, 1.3333))|flip_lr(p=0.5)",
    "rrc(size=(8, 6), scale=(1.0, 1.0), ratio=(1.0, 1.0), antialias=False)",
    "rrc(size=8, scale=(table([0.08, 0.5, 1.0]), 1.0))",
    "pad_crop(padding=0)|pad_crop(padding=2, max_shift=table([0, 1, 2]), mode='reflect')",
    "flip_lr(p=0)|flip_ud(p=1)|grayscale(p=1.0)",
    "color_jitter(brightness=0, contrast=1.5, saturation=0.4, hue=0.5)",
    "normalize(mean=0.5, std=(0.2, 0.3, 0.4))|mixup(alpha=0.2)|cutmix(alpha=1)",
    "mixup_cutmix",
    "mixup_cutmix(mixup_alpha=0)|mixup_cutmix(cutmix_alpha=0, switch_prob=1, label_smoothing=0, mix_prob=0)",
    "center_crop(size=8, crop_ratio=1)",
])
def test_valid_boundary_parameters_build(spec):
    build_pipeline(spec, 3)


# --- the train pipeline's output shape against what evaluation feeds the model ---

def test_output_shape_mismatch_names_both_shapes_and_the_fix():
    """rrc(size=64) on 8x8 digits trains at 64 px and would evaluate at 8 px."""
    augment = build_pipeline("rrc(size=64)|flip_lr", 10)
    fix = r"\(64, 64, 1\) .*\(8, 8, 1\).*center_crop\(size=64\).*rrc\(size=8\)"
    with pytest.raises(ConfigError, match=fix) as info:
        check_output_shapes(augment, None, (8, 8, 1), 10)
    assert info.value.field == "augment.pipeline"
    normalize = build_eval_transform("normalize(mean=(0.5,), std=(0.25,))", 10)
    with pytest.raises(ConfigError, match=r"\(64, 64, 1\)"):
        check_output_shapes(augment, normalize, (8, 8, 1), 10)
    crop = build_eval_transform("center_crop(size=6)", 10)  # eval at 6 px, train at the native 8 px
    with pytest.raises(ConfigError, match=r"\(8, 8, 3\) but evaluation feeds the model images of shape \(6, 6, 3\)"):
        check_output_shapes(None, crop, (8, 8, 3), 10)


def test_matching_output_shapes_pass():
    chex.assert_equal(check_output_shapes(build_pipeline("rrc(size=8)|flip_lr|mixup(alpha=0.2)", 10), None,
                                          (8, 8, 1), 10), (8, 8, 1))
    upscaled = check_output_shapes(build_pipeline("rrc(size=64)", 10), build_eval_transform(
        "center_crop(size=64)|normalize(mean=(0.5,), std=(0.25,))", 10), (8, 8, 1), 10)
    chex.assert_equal(upscaled, (64, 64, 1))
    chex.assert_equal(check_output_shapes(None, None, (123,), 2), (123,))  # feature vectors, no pipelines
    chex.assert_equal(check_output_shapes(build_pipeline("pad_crop(padding=2)", 3), None, (5, 7, 3), 3), (5, 7, 3))


def test_output_shapes_report_a_pipeline_that_cannot_apply():
    """A normalize with 3 means on 1-channel images is caught by the trace, as a ConfigError of its field."""
    transform = build_eval_transform("normalize(mean=(0.5, 0.4, 0.3), std=0.2)", 10)
    with pytest.raises(ConfigError, match=r"cannot apply it to images of shape \(8, 8, 1\)") as info:
        check_output_shapes(None, transform, (8, 8, 1), 10)
    assert info.value.field == "augment.eval_pipeline"


def test_a_pipeline_given_one_key_instead_of_one_per_example_says_so():
    augment = build_pipeline("flip_lr", 3)
    with pytest.raises(ValueError, match=r"one PRNG key per example.*got keys \(2,\) and images \(4, 8, 8, 1\)"):
        augment(jax.random.PRNGKey(0), jnp.zeros((4, 8, 8, 1)), jnp.zeros(4, jnp.int32))


@pytest.mark.parametrize("spec, smoothing", [
    ("rrc(size=8)|mixup(alpha=0.2)", 0.0),
    ("mixup_cutmix", 0.1),  # timm's default
    ("mixup_cutmix(label_smoothing=0.0)", 0.0),
    ("rrc(size=8)|mixup_cutmix(label_smoothing=0.3)|mixup(alpha=0.2)", 0.3),
])
def test_target_smoothing_reads_the_pipelines_label_smoothing(spec, smoothing):
    assert target_smoothing(spec, 2) == pytest.approx(smoothing)

