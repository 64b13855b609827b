"""Datasets (`load_dataset`, `from_arrays`)."""

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
    "SOURCES", "ArraySource", "Dataset", "DataError", "Source", "TfdsSource",
    "check_data_config", "from_arrays", "load_dataset",
]
