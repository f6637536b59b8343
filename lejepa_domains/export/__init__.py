"""Hand a run's backbone to the ecosystem: a folder timm loads as it is (``timm.create_model("local-dir:DIR",
pretrained=True)``) with a Hugging Face model card, optionally uploaded to the Hub; and model references
(``local-dir:DIR``, ``hf-hub:ORG/NAME``) that evaluation accepts like run folders.

- :mod:`.timm_folder`: config.json + model.safetensors written by timm, with this run's input recipe
- :mod:`.card`: the model card (README.md) from the run, its data card and its evaluation report
- :mod:`.licence`: the data's licence text → a Hugging Face licence id, and whether that is clear
- :mod:`.hub`: upload (``--push``) and resolving ``local-dir:`` / ``hf-hub:`` references
- :mod:`.export`: :func:`export_run`, the Python API of ``lejepa-domains export``
"""

from .export import ExportResult, export_run, find_eval_report
from .hub import PushResult, parse_model_ref, resolve_model_ref
from .licence import LicenceReading, read_licence

__all__ = ["export_run", "ExportResult", "find_eval_report", "PushResult", "parse_model_ref", "resolve_model_ref",
           "LicenceReading", "read_licence"]
