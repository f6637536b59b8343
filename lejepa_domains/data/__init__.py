"""Data: sources (where images come from) and views (multi-crop augmentation)."""
