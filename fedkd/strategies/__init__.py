"""Server strategies, one file per algorithm, selectable by ``--strategy``."""

from fedkd.config import Registry
from fedkd.strategies.base import FedkdStrategy, KnowledgeStrategy
from fedkd.strategies.centralized import Centralized
from fedkd.strategies.dsfl import DSFL
from fedkd.strategies.fedavg import FedAvg
from fedkd.strategies.feddf import FedDF
from fedkd.strategies.feddf_logits import FedDFLogits
from fedkd.strategies.feddistill import FedDistill
from fedkd.strategies.fedmd import FedMD
from fedkd.strategies.local import Local

STRATEGIES: Registry = Registry("strategy", {
    s.name: s for s in (FedMD, FedDF, FedDFLogits, DSFL, FedDistill, FedAvg, Local, Centralized)})

__all__ = ["STRATEGIES", "FedkdStrategy", "KnowledgeStrategy", "Centralized", "DSFL", "FedAvg", "FedDF",
           "FedDFLogits", "FedDistill", "FedMD", "Local"]
