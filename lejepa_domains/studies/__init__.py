"""Studies: many runs through one trainer and one evaluation, one report.

- ``lejepa-domains ablate RECIPE --study NAME --budget tiny|small|full`` (:func:`ablate`): ablations the LeJEPA
  literature argues about; studies and budgets in :mod:`.catalogue`, the plan in :mod:`.ablation`, the combined
  report (``ablation.json``, ``ablation.md``, ``ablation.png``) in :mod:`.ablation_report`.
- ``lejepa-domains compare`` (:func:`compare`): scratch LeJEPA vs the frozen foundation model vs the foundation
  model adapted with LeJEPA (plus the random and pixels floors), with paired intervals and a verdict
  (:mod:`.compare`, :mod:`.compare_report`).
- Both run on one grid runner (:mod:`.grid`): each (name, recipe, training options, seed) cell is trained, reused,
  resumed or refused, then evaluated through the one evaluation.
"""

from .ablation import ablate, plan_study
from .catalogue import BUDGETS, STUDIES, get_budget, get_study
from .compare import ARMS, compare, plan_compare, verdict

__all__ = ["ablate", "plan_study", "STUDIES", "BUDGETS", "get_study", "get_budget", "compare", "plan_compare",
           "verdict", "ARMS"]
