"""Built-in recipes (installed as ``lejepa_domains.recipes``). Each module defines ``recipe = Recipe(...)``."""
