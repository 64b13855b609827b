"""Models as Flax Linen modules, built by name from `config.model`.

Every module maps float32 inputs (B, *image_shape) to float32 logits (B, num_classes) via
`__call__(x, train=False)`; BatchNorm models keep a "batch_stats" collection. Importing this
package registers glm, mlp, cnn, lenet (LeNet-5, no BatchNorm) and the ResNets in MODELS.
"""

from jaxlab.models.registry import MODELS, compute_dtype, create_model, register_model
from jaxlab.models.glm import GLM, polynomial_features
from jaxlab.models.mlp import MLP
from jaxlab.models.cnn import CNN
from jaxlab.models.lenet import LeNet
from jaxlab.models.resnet import BasicBlock, BottleneckBlock, ResNet

__all__ = [
    "MODELS", "create_model", "register_model", "compute_dtype", "polynomial_features",
    "GLM", "MLP", "CNN", "LeNet", "ResNet", "BasicBlock", "BottleneckBlock",
]
