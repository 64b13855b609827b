"""Datasets (`load_dataset`, `from_arrays`) and host-side batching (`TrainBatches`, `eval_batches`)."""

from jaxlab.data.pipeline import TrainBatches, eval_batches, num_eval_batches, to_float
from jaxlab.data.sources import (
    SOURCES,
    ArraySource,
    DataError,
    Dataset,
    Source,
    TfdsSource,
    check_data_config,
    from_arrays,
    load_dataset,
)

__all__ = [
    "SOURCES", "ArraySource", "Dataset", "DataError", "Source", "TfdsSource", "TrainBatches",
    "check_data_config", "eval_batches", "from_arrays", "load_dataset", "num_eval_batches", "to_float",
]
