"""Train-step throughput: jaxlab's data-parallel step against the same model and optimiser in PyTorch.

    pip install -e . -r benchmarks/requirements.txt
    python benchmarks/train_step.py --mode=cpu            # ResNet-18 (CIFAR stem), 32x32, batch 128
    python benchmarks/train_step.py --mode=gpu            # ResNet-50 (ImageNet stem), 224x224, bf16, batch 256

Both sides run in this process on the same machine: SGD with momentum 0.9, weight decay 5e-4
on kernels, softmax cross-entropy, BatchNorm in training mode, a fixed synthetic batch already
on the device (the input pipeline is not measured). Prints images/s for each and the ratio.
Both modes report the step's convolution and matmul FLOPs (counted from the jaxpr) and the achieved FLOP/s;
its PyTorch peer is torchvision's resnet50 under bf16 autocast, channels-last.
"""

from __future__ import annotations

import argparse
import json
import time

import jax
import jax.extend
import numpy as np


def make_jax_step(model_name: str, image_size: int, num_classes: int, batch: int, dtype: str,
                  model_transform=None, extension=None):
    """(step, state, batch) of jaxlab's train step on all local devices: SGD momentum 0.9, weight decay 5e-4,
    a fixed synthetic uint8 batch. `model_transform(model, input_shape)` may wrap the model (e.g. DReg),
    `extension(model)` give the step a trainer extension (jaxlab.train.Extension, e.g. the DReg penalty)."""
    from jaxlab import parallel
    from jaxlab.config import base_config
    from jaxlab.models import create_model
    from jaxlab.train import create_optimizer, create_train_state, make_train_step

    config = base_config()
    config.model.name, config.model.dtype = model_name, dtype
    config.training.batch_size = batch
    config.optimizer.update(name="momentum", learning_rate=0.1, momentum=0.9, weight_decay=5e-4)
    config.schedule.name = "constant"
    mesh = parallel.make_mesh()
    input_shape = (image_size, image_size, 3)
    model = create_model(config.model, num_classes)
    if model_transform is not None:
        model = model_transform(model, input_shape)
    tx, _ = create_optimizer(config, 1000, 1000)
    state = parallel.replicate(create_train_state(0, model, tx, input_shape), mesh)
    rng = np.random.default_rng(0)
    batch_arrays = parallel.shard_batch({
        "image": rng.integers(0, 256, (batch, *input_shape), dtype=np.uint8),
        "label": rng.integers(0, num_classes, (batch,)).astype(np.int32),
        "index": np.arange(batch, dtype=np.int32),
    }, mesh)
    step = make_train_step(model, tx, mesh, num_classes=num_classes,
                           extensions=[extension(model)] if extension else [])
    return step, state, batch_arrays


def jax_step_time(model_name: str, image_size: int, num_classes: int, batch: int, dtype: str,
                  steps: int, warmup: int) -> tuple[float, float | None]:
    """Seconds per train step of jaxlab's step on all local devices, and its FLOPs if known."""
    step, state, batch_arrays = make_jax_step(model_name, image_size, num_classes, batch, dtype)
    flops = matmul_flops(jax.make_jaxpr(step)(state, batch_arrays).jaxpr)
    for _ in range(warmup):
        state, metrics = step(state, batch_arrays)
    jax.block_until_ready(metrics)
    start = time.perf_counter()
    for _ in range(steps):
        state, metrics = step(state, batch_arrays)
    jax.block_until_ready(metrics)
    return (time.perf_counter() - start) / steps, flops


def matmul_flops(jaxpr) -> float:
    """FLOPs of the convolutions and matrix products in a jaxpr (forward and backward), counted
    from shapes: 2 x output size x contraction size. Backend-independent, unlike XLA's cost
    analysis of a compiled GPU module (cuDNN calls are opaque to it). Elementwise work is not
    counted, so achieved FLOP/s is the usual "model FLOPs" utilisation."""
    total = 0.0
    for eqn in jaxpr.eqns:
        if eqn.primitive.name == "conv_general_dilated":
            rhs = eqn.invars[1].aval
            out = eqn.outvars[0].aval
            spec = eqn.params["dimension_numbers"].rhs_spec  # (out feature, in feature, *spatial)
            contraction = rhs.shape[spec[1]] * np.prod([rhs.shape[d] for d in spec[2:]])
            # A transposed conv (input gradient of a strided conv) dilates its input with zeros: skip them.
            total += 2.0 * np.prod(out.shape) * contraction / np.prod(eqn.params["lhs_dilation"])
        elif eqn.primitive.name == "dot_general":
            (contract_lhs, _), _ = eqn.params["dimension_numbers"]
            lhs = eqn.invars[0].aval
            total += 2.0 * np.prod(eqn.outvars[0].aval.shape) * np.prod([lhs.shape[d] for d in contract_lhs])
        for sub in jax.extend.core.jaxprs_in_params(eqn.params):
            total += matmul_flops(sub)
    return total


def torch_step_time(arch: str, image_size: int, num_classes: int, batch: int, steps: int, warmup: int,
                    device: str, channels_last: bool, bf16: bool) -> float:
    """Seconds per train step of the PyTorch peer."""
    import torch
    import torch.nn.functional as F

    torch.manual_seed(0)
    model = (torch_resnet18_cifar(num_classes) if arch == "resnet18_cifar"
             else __import__("torchvision").models.resnet50(num_classes=num_classes)).to(device)
    decay = [p for p in model.parameters() if p.ndim > 1]
    no_decay = [p for p in model.parameters() if p.ndim <= 1]
    optimizer = torch.optim.SGD([{"params": decay, "weight_decay": 5e-4}, {"params": no_decay, "weight_decay": 0.0}],
                                lr=0.1, momentum=0.9)
    memory_format = torch.channels_last if channels_last else torch.contiguous_format
    model = model.to(memory_format=memory_format)
    x = torch.randint(0, 256, (batch, 3, image_size, image_size), dtype=torch.uint8, device=device)
    y = torch.randint(0, num_classes, (batch,), device=device)

    def step():
        images = (x.float() / 255.0).contiguous(memory_format=memory_format)
        with torch.autocast(device_type=device.split(":")[0], dtype=torch.bfloat16, enabled=bf16):
            loss = F.cross_entropy(model(images), y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        return loss

    sync = torch.cuda.synchronize if device.startswith("cuda") else (lambda: None)
    model.train()
    for _ in range(warmup):
        step()
    sync()
    start = time.perf_counter()
    for _ in range(steps):
        loss = step()
    loss.item()
    sync()
    return (time.perf_counter() - start) / steps


def torch_resnet18_cifar(num_classes: int):
    """ResNet-18 with the CIFAR stem (3x3 conv, stride 1, no max-pool), as jaxlab's resnet18_cifar."""
    import torch.nn as nn

    class Block(nn.Module):
        def __init__(self, cin, cout, stride):
            super().__init__()
            self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
            self.bn1 = nn.BatchNorm2d(cout)
            self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
            self.bn2 = nn.BatchNorm2d(cout)
            self.shortcut = (nn.Sequential() if stride == 1 and cin == cout else
                             nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout)))

        def forward(self, x):
            out = self.bn1(self.conv1(x)).relu()
            return (self.bn2(self.conv2(out)) + self.shortcut(x)).relu()

    layers, cin = [nn.Conv2d(3, 64, 3, 1, 1, bias=False), nn.BatchNorm2d(64), nn.ReLU()], 64
    for i, cout in enumerate((64, 128, 256, 512)):
        for j in range(2):
            layers.append(Block(cin, cout, 2 if i > 0 and j == 0 else 1))
            cin = cout
    layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(512, num_classes)]
    return nn.Sequential(*layers)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--mode", choices=("cpu", "gpu"), default="cpu")
    parser.add_argument("--batch", type=int, default=None)
    parser.add_argument("--steps", type=int, default=None)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--no-torch", action="store_true", help="skip the PyTorch peer")
    parser.add_argument("--json", default=None, help="also write the results to this file")
    args = parser.parse_args()

    if args.mode == "cpu":
        setting = dict(model="resnet18_cifar", image_size=32, num_classes=10, dtype="float32",
                       batch=args.batch or 128, steps=args.steps or 5)
        device = "cpu"
    else:
        setting = dict(model="resnet50_imagenet", image_size=224, num_classes=1000, dtype="bfloat16",
                       batch=args.batch or 256, steps=args.steps or 30)
        device = "cuda"
    batch, steps = setting["batch"], setting["steps"]
    results = {"mode": args.mode, "jax_devices": [str(d) for d in jax.devices()], **setting}

    seconds, flops = jax_step_time(setting["model"], setting["image_size"], setting["num_classes"], batch,
                                   setting["dtype"], steps, args.warmup)
    results["jaxlab_images_per_s"] = batch / seconds
    results["step_flops"] = flops
    results["jaxlab_tflops_per_s"] = flops / seconds / 1e12
    print(f"jaxlab  {setting['model']}: {batch / seconds:9.1f} images/s ({seconds * 1e3:.1f} ms/step)"
          + f", {flops / seconds / 1e12:.3g} TFLOP/s achieved (conv+matmul FLOPs)")

    if not args.no_torch:
        import torch
        if args.mode == "cpu":
            torch.set_num_threads(max(1, len(__import__("os").sched_getaffinity(0))))
        results["torch_version"] = torch.__version__
        for channels_last in (False, True):
            name = "channels_last" if channels_last else "nchw"
            t = torch_step_time("resnet18_cifar" if args.mode == "cpu" else "resnet50", setting["image_size"],
                                setting["num_classes"], batch, steps, args.warmup, device, channels_last,
                                bf16=args.mode == "gpu")
            results[f"torch_{name}_images_per_s"] = batch / t
            print(f"torch   {name:13s}: {batch / t:9.1f} images/s ({t * 1e3:.1f} ms/step); "
                  f"jaxlab / torch = {seconds and t / seconds:.2f}x")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=2)


if __name__ == "__main__":
    main()
