"""Alternative regularisers for the ablation studies (one loss per file). LeJEPA's own regulariser, SIGReg, lives in
:mod:`lejepa_domains.method.sigreg`; these exist so that ``lejepa-domains ablate RECIPE --study regularizer`` can compare it
with other anti-collapse penalties under the same trainer and evaluation."""

from .spectral_entropy import SpectralEntropyPenalty, spectral_entropy_penalty
from .vicreg import VICRegPenalty, vicreg_terms

__all__ = ["VICRegPenalty", "vicreg_terms", "SpectralEntropyPenalty", "spectral_entropy_penalty"]
