"""The pieces around the training loop in :mod:`lejepa_domains.train`: run setup, sampler, schedule, online probe,
preemption, meters, builders. The loop and the step themselves live in ``train.py``, readable top to bottom."""
