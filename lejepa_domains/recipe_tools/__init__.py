"""The user's path for a new dataset: ``recipes new`` (write a recipe + card stub inferred from the data),
``recipes check`` (load a few samples, validate, measure normalisation, save a PNG of the views) and ``card``.

Library functions, one module per job: :mod:`.infer` (read the data), :mod:`.scaffold` (write the files),
:mod:`.check` (check a recipe against its data); printing lives in :mod:`lejepa_domains.ui.recipes`. The CLI (:mod:`lejepa_domains.cli`) only
parses arguments and calls these.
"""

from .check import CheckReport, check_recipe
from .infer import Inferred, infer_dataset
from .scaffold import NewRecipe, new_recipe

__all__ = ["new_recipe", "check_recipe", "NewRecipe", "CheckReport", "Inferred", "infer_dataset"]
