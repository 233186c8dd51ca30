"""Server strategies, one file per algorithm, selectable by ``--strategy``."""

from fedkd.strategies.base import KnowledgeStrategy
from fedkd.strategies.fedmd import FedMD

STRATEGIES: dict[str, type[KnowledgeStrategy]] = {"fedmd": FedMD}
