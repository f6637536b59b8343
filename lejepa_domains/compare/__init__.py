"""``lejepa-domains compare``: scratch LeJEPA vs the frozen foundation model vs the foundation model adapted with
LeJEPA (plus the random and pixels floors), through one evaluation, with paired intervals and a verdict."""

from .runner import ARMS, compare, plan_compare, verdict

__all__ = ["compare", "plan_compare", "verdict", "ARMS"]
