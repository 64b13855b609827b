"""Datasets (`load_dataset`, `from_arrays`, the `SOURCES` registry) and host-side batching (`TrainBatches`,
`eval_batches`).

Modules, bottom up: formats (upstream file readers), dataset (Source / Dataset types), synthetic (the planted
dataset), pipeline (batching), jpeg (per-example decoding and crops), loader (multi-process JPEG loading:
`JpegSource`, `JpegBatches`, `train_batches`), sources (the registry of data sources).

Training batches of any split: `train_batches(dataset.train, global_batch_size, seed, scale_min=...)` (a
`TrainBatches` for in-memory splits, a `JpegBatches` for encoded-image splits).
"""

from jaxlab.data.dataset import ArraySource, Dataset, Source, all_examples, from_arrays
from jaxlab.data.loader import FileRecords, JpegBatches, JpegSource, TfdsRecords, train_batches
from jaxlab.data.pipeline import TrainBatches, eval_batches, num_eval_batches, to_float
from jaxlab.data.sources import SOURCES, DataSource, TfdsSource, check_data_config, load_dataset
from jaxlab.errors import DataError

__all__ = [
    "SOURCES", "ArraySource", "DataError", "DataSource", "Dataset", "FileRecords", "JpegBatches", "JpegSource",
    "Source", "TfdsRecords", "TfdsSource", "TrainBatches", "all_examples", "check_data_config", "eval_batches",
    "from_arrays", "load_dataset", "num_eval_batches", "to_float", "train_batches",
]
