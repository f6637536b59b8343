"""Ablations the LeJEPA literature argues about, run with the same trainer and the same evaluation (the package is
``ablation``; its entry point is ``lejepa_domains.ablate(...)``).

``lejepa-domains ablate RECIPE --study NAME --budget tiny|small|full`` (Python: :func:`ablate`). Studies and budgets
live in :mod:`.studies`, the runner (resumable, reuses finished runs) in :mod:`.runner`, the combined report
(``ablation.json``, ``ablation.md``, ``ablation.png``, a rich table) in :mod:`.report`.
"""

from .runner import ablate, plan_study
from .studies import BUDGETS, STUDIES, get_budget, get_study

__all__ = ["ablate", "plan_study", "STUDIES", "BUDGETS", "get_study", "get_budget"]
