"""FedAvg (McMahan et al., AISTATS 2017): the parameter-averaging baseline.

Aggregation is Flower's own ``FedAvg`` (weighted by number of examples); sampling,
messages, validation and results are fedkd's, so FedAvg runs through the same
``run.py`` and results pipeline as the distillation strategies. Averaging needs
one architecture for every client. With ``--dp central`` it is DP-FedAvg (McMahan et
al., ICLR 2018) through Flower's ``DifferentialPrivacyServerSideFixedClipping``,
averaging uniformly.
"""

from __future__ import annotations

from fedkd.config import ConfigError, RunConfig
from fedkd.strategies.parameter_averaging import ParameterAveraging


class FedAvg(ParameterAveraging):
    name = "fedavg"
    dp_fedavg = True

    @classmethod
    def check(cls, config: RunConfig) -> None:
        super().check(config)
        if len(config.model_names) > 1:
            raise ConfigError(
                "models", config.models,
                f"--strategy={cls.name} averages parameters, so every client needs the same architecture; "
                "pass one model (e.g. --models cnn-s), or use a distillation strategy "
                "(fedmd, feddf, feddf-logits, dsfl, feddistill), which mixes architectures")
