"""Use a backbone on a whole archive: ``embed`` (images → chunked Parquet + manifest + sidecar), ``search``
(cosine nearest neighbours, exact on the device or through a faiss index) and ``outliers`` (kNN-distance score).

- :mod:`.backbone`: which backbone (the evaluation's resolution and encoders; no second feature extractor)
- :mod:`.archive`: the embeddings folder's format, its writer pieces and its one checked reader
- :mod:`.run`: :func:`embed`
- :mod:`.search`: :func:`search`, :func:`exact_topk`, the faiss index
- :mod:`.outliers`: :func:`outliers`
"""

from __future__ import annotations

from .archive import Embeddings, load
from .run import embed

__all__ = ["embed", "load", "Embeddings"]
