"""FedAvg (McMahan et al., AISTATS 2017): the parameter-averaging baseline.

Aggregation is Flower's own ``FedAvg`` (weighted by number of examples); sampling,
messages, validation and results are fedkd's, so FedAvg runs through the same
``run.py`` and results pipeline as the distillation strategies. Averaging needs
one architecture for every client. With ``--dp central`` it is DP-FedAvg (McMahan et
al., ICLR 2018) through Flower's ``DifferentialPrivacyServerSideFixedClipping``,
averaging uniformly.
"""

from __future__ import annotations

from fedkd.strategies.parameter_averaging import ParameterAveraging


class FedAvg(ParameterAveraging):
    name = "fedavg"
    dp_fedavg = True
    one_architecture = True
