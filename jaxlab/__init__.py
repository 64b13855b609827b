"""jaxlab: a JAX/Flax library and experiment runner.

Three lines of research share one data-parallel trainer: class-level effects of data augmentation
(`jaxlab.classwise`), knowledge-adaptation priors (`jaxlab.kprior`) and paired-parameter regularisation for
large batches (`jaxlab.dreg`). Submodules load on first use (`import jaxlab; jaxlab.classwise.analyze(...)`),
so importing one study never loads the others or the training loop. See README.md for a tour and its
Architecture section for the layers.
"""

import importlib

__version__ = "0.1.0"

_SUBMODULES = ("augment", "classwise", "config", "data", "dreg", "errors", "experiments", "kprior", "models",
               "parallel", "registry", "train")
__all__ = list(_SUBMODULES)


def __getattr__(name: str):
    if name in _SUBMODULES:
        return importlib.import_module(f"jaxlab.{name}")
    raise AttributeError(f"module 'jaxlab' has no attribute {name!r}")
