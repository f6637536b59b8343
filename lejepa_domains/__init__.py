"""lejepa-domains: in-domain LeJEPA self-supervised pretraining for scientific and specialist images."""

import os as _os

_os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")  # albumentations otherwise queries PyPI at import

from ._version import __version__  # noqa: E402
from .errors import DataError, OfflineError, UserError  # noqa: E402
from .recipe import Recipe, TrainConfig, list_recipes, load_recipe  # noqa: E402

__all__ = ["Recipe", "TrainConfig", "load_recipe", "list_recipes", "pretrain", "evaluate", "ablate", "compare",
           "export_run", "write_shards", "embed", "search", "outliers", "load_embeddings", "UserError", "DataError",
           "OfflineError", "__version__"]


def pretrain(recipe=None, **kwargs):
    """Train a backbone from scratch with LeJEPA (see :func:`lejepa_domains.train.run.pretrain`); ``recipe=None``:
    ``specimens``, or with ``resume=RUN`` the run's own recipe."""
    from .train import pretrain as _pretrain

    return _pretrain(recipe, **kwargs)


def evaluate(recipe=None, **kwargs):
    """Frozen-backbone evaluation of a run and/or baselines (see :func:`lejepa_domains.evaluate.run.evaluate`)."""
    from .evaluate.run import evaluate as _evaluate

    return _evaluate(recipe, **kwargs)


def ablate(recipe="specimens", study="heuristics", budget="tiny", **kwargs):
    """Run an ablation study and write its combined report (see :func:`lejepa_domains.studies.ablation.ablate`)."""
    from .studies.ablation import ablate as _ablate

    return _ablate(recipe, study, budget, **kwargs)


def compare(recipe="specimens", foundation="dinov2", weights=None, budget="tiny", **kwargs):
    """Scratch, transfer or adapt: one comparison and its report (see :func:`lejepa_domains.studies.compare.compare`)."""
    from .studies import compare as _compare

    return _compare(recipe, foundation, weights, budget, **kwargs)


def export_run(run_dir, to=None, **kwargs):
    """Export a run's backbone as a timm ``local-dir:`` folder with a model card, optionally pushed to the Hugging
    Face Hub (see :func:`lejepa_domains.export.export_run`; not named ``export``, which is the subpackage)."""
    from .export import export_run as _export_run

    return _export_run(run_dir, to, **kwargs)


def write_shards(source=None, out="shards", **kwargs):
    """Write WebDataset tar shards from a local copy, a hub dataset or a recipe (see
    :func:`lejepa_domains.recipe_tools.shard_writer.write_shards`)."""
    from .recipe_tools.shard_writer import write_shards as _write_shards

    return _write_shards(source, out, **kwargs)


def embed(recipe=None, backbone=None, out=None, **kwargs):
    """Embed a recipe's images with a frozen backbone into chunked Parquet (see
    :func:`lejepa_domains.embeddings.run.embed`); returns a summary dict; :func:`load_embeddings` reads the vectors
    back."""
    from .embeddings.run import embed as _embed

    return _embed(recipe, backbone, out, **kwargs)


def load_embeddings(path):
    """An embeddings folder, checked: ids, sources, splits, labels and the (N, D) float32 vectors
    (see :func:`lejepa_domains.embeddings.archive.load`)."""
    from .embeddings.archive import load as _load

    return _load(path)


def search(embeddings, queries, k=16, **kwargs):
    """Cosine nearest neighbours of ids or image files (see :func:`lejepa_domains.embeddings.search.search`); returns a
    SearchResult (ids, scores, rows arrays; ``.table()``)."""
    from .embeddings.search import search as _search

    return _search(embeddings, queries, k, **kwargs)


def outliers(embeddings, top=64, k=10, **kwargs):
    """kNN-distance outlier scores of every embedded image (see
    :func:`lejepa_domains.embeddings.outliers.outliers`)."""
    from .embeddings.outliers import outliers as _outliers

    return _outliers(embeddings, top, k, **kwargs)
