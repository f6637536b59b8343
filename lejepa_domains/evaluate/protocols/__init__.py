"""The evaluation protocols, one module each; every one computes its report entry from a backbone's cached features
and describes itself for ``report["protocol"]`` (see :mod:`.base`).

``knn`` (weighted kNN, the headline), ``linear`` (linear probe, C chosen on val), ``fewshot`` (few-shot linear probe
on shared support sets), ``diagnostics`` (RankMe, SIGReg statistic).
"""

from .base import Bootstrap, Protocol, ProtocolInput, ProtocolResult, Splits
from .diagnostics import DiagnosticsProtocol
from .fewshot import FewShotProtocol
from .knn import HEADLINE_K, KNNProtocol
from .linear import LinearProtocol

__all__ = ["Bootstrap", "Protocol", "ProtocolInput", "ProtocolResult", "Splits", "KNNProtocol", "LinearProtocol",
           "FewShotProtocol", "DiagnosticsProtocol", "HEADLINE_K"]
