"""``python -m lejepa_domains`` (also what torchrun launches: ``torchrun … -m lejepa_domains pretrain …``)."""

from .cli import main

main()
