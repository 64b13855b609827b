"""`validate(config)`: every field a training run reads, checked before any data is loaded or code compiled."""

from __future__ import annotations

from jaxlab import config as config_lib
from jaxlab import data, models


def validate(config, *, num_devices: int, process_count: int = 1) -> None:
    """The trainer schema's values (jaxlab.config.validate), the model's name and dtype and the data source's
    fields (its registry's own check); raises ConfigError naming the field."""
    config_lib.validate(config, num_devices=num_devices, process_count=process_count)
    models.MODELS.lookup(config.model.name)
    models.compute_dtype(config.model)
    data.check_data_config(config.data)
