"""jaxlab: a JAX/Flax library and experiment runner.

Three lines of research share one data-parallel trainer:
class-level effects of data augmentation (`jaxlab.classwise`), knowledge-adaptation
priors (`jaxlab.kprior`) and paired-parameter regularisation for large batches
(`jaxlab.dreg`). See README.md for a tour.
"""

__version__ = "0.1.0"
