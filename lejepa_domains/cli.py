"""Command-line interface (typer). Parses arguments and calls one library function per command; no logic here."""

from __future__ import annotations

import os

os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")

import shutil  # noqa: E402
import sys  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import List, Optional  # noqa: E402

import typer  # noqa: E402
from rich.console import Console  # noqa: E402
from rich.console import Console as _Console
from rich.markup import escape

from .errors import UserError  # noqa: E402

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="In-domain LeJEPA pretraining and frozen-backbone evaluation for scientific images.")
recipes_app = typer.Typer(no_args_is_help=False, invoke_without_command=True, help="List and inspect recipes.")
app.add_typer(recipes_app, name="recipes")
err_console = Console(stderr=True)


def _version(value: bool) -> None:
    if value:
        from ._version import __version__

        typer.echo(f"lejepa-domains {__version__}")
        raise typer.Exit()


@app.callback()
def _root(version: Optional[bool] = typer.Option(None, "--version", callback=_version, is_eager=True,
                                                 help="Print the version and exit.")) -> None:
    """In-domain LeJEPA pretraining and frozen-backbone evaluation for scientific images."""


@app.command()
def pretrain(
    ctx: typer.Context,
    recipe: Optional[str] = typer.Argument(None, help="Built-in recipe name or path to a recipe .py file "
                                           "(default: specimens; with --resume: the run's own).",
                                           show_default=False),
    out: Optional[Path] = typer.Option(None, "--out", help="Run folder (default: runs/RECIPE-YYYYmmdd-HHMMSS)."),
    epochs: Optional[int] = typer.Option(None, "--epochs", help="Training epochs (recipe default if omitted)."),
    batch_size: Optional[int] = typer.Option(None, "--batch-size", help="Images per step (per process)."),
    lr: Optional[float] = typer.Option(None, "--lr", help="Peak AdamW learning rate."),
    lam: Optional[float] = typer.Option(None, "--lambda", help="SIGReg weight λ in (1−λ)·invariance + λ·SIGReg."),
    schedule: Optional[str] = typer.Option(None, "--schedule", help="cosine (warmup+cosine) or constant."),
    device: str = typer.Option("auto", "--device", help="auto, cpu, cuda, cuda:N or mps."),
    seed: Optional[int] = typer.Option(None, "--seed", help="Random seed (same seed ⇒ same numbers on CPU)."),
    resume: Optional[Path] = typer.Option(None, "--resume", help="Continue the run in this folder."),
    trust_checkpoint: bool = typer.Option(False, "--trust-checkpoint", help="With --resume: load a checkpoint the "
                                          "safe loader refuses (unpickling can run code: only a file you wrote)."),
    data: Optional[str] = typer.Option(None, "--data", help="Local copy of the data (path) instead of the hub."),
    num_workers: Optional[int] = typer.Option(None, "--num-workers", help="DataLoader worker processes."),
    num_slices: Optional[int] = typer.Option(None, "--num-slices", help="SIGReg random directions per step."),
    precision: Optional[str] = typer.Option(None, "--precision", help="auto (bf16 on CUDA), bf16 or fp32."),
    compile: Optional[bool] = typer.Option(None, "--compile/--no-compile", help="torch.compile the model (a run "
                                           "may be resumed with or without it)."),
    views: Optional[str] = typer.Option(None, "--views", help="cpu (albumentations in the DataLoader) or device "
                                        "(batched views on the training device; built-in augmentations)."),
    devices: Optional[int] = typer.Option(None, "--devices", help="Run N processes on this machine (one per GPU, "
                                          "or gloo processes on CPU) by re-launching through torchrun."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace an existing run in --out."),
    tensorboard: bool = typer.Option(False, "--tensorboard", help="Also log to TensorBoard (needs tensorboard)."),
    logger: Optional[List[str]] = typer.Option(None, "--logger", help="Experiment tracker: tensorboard, wandb or "
                                               "mlflow (optional extras); repeat for several."),
    init_from: Optional[Path] = typer.Option(None, "--init-from", help="Start a new run from another run's backbone "
                                             "weights (not a resume)."),
    checkpoint_every: Optional[int] = typer.Option(None, "--checkpoint-every", help="Also checkpoint every N steps "
                                                   "inside epochs (0: at epoch ends only)."),
    skip_bad_samples: bool = typer.Option(False, "--skip-bad-samples", help="Skip (and log and count) images that "
                                          "cannot be decoded instead of stopping."),
    time_budget: Optional[str] = typer.Option(None, "--time-budget", help="End the run within this wall time "
                                              "(10m, 1h30m, 90s): the number of steps is set from timed steps; "
                                              "without --epochs the budget alone decides."),
    init: Optional[str] = typer.Option(None, "--init", help="Continue from foundation weights: dinov2[-b|-l], "
                                       "dinov3[-b|-l], timm:MODEL_NAME (--weights), a run folder or local-dir:DIR."),
    weights: Optional[Path] = typer.Option(None, "--weights", help="With --init: the weights file (timm or Meta "
                                           "format; default: the HF cache, else the hub)."),
    init_patch: Optional[str] = typer.Option(None, "--init-patch", help="With --init: auto (native patch if it "
                                             "divides the sizes, else resampled) or a patch side in pixels."),
    adapt: Optional[str] = typer.Option(None, "--adapt", help="With --init: what trains — full (default), lora[:RANK]"
                                        ", partial:N (last N blocks) or explora[:N,RANK] (N blocks + LoRA)."),
    backbone_lr_scale: Optional[float] = typer.Option(None, "--backbone-lr-scale", help="Backbone learning rate "
                                                      "= lr × this (default 1; 0.1 with --init)."),
    layer_decay: Optional[float] = typer.Option(None, "--layer-decay", help="Layer-wise decay of the backbone's "
                                                "learning rate, in (0, 1] (1: off)."),
    keep_snapshots: Optional[int] = typer.Option(None, "--keep-snapshots", help="Keep the backbone of N epochs "
                                                 "(spread evenly, last included) for `eval --select`."),
    stream: Optional[bool] = typer.Option(None, "--stream/--no-stream", help="Sharded data: stream the shards, or "
                                          "decode once into the memory-mapped cache (default: cache if it fits)."),
    shuffle_buffer: Optional[int] = typer.Option(None, "--shuffle-buffer", help="Streaming: samples in each "
                                                 "reader's seeded shuffle buffer."),
    slurm: Optional[str] = typer.Option(None, "--slurm", help="Submit to Slurm through submitit: "
                                        "KEY=VALUE pairs joined by commas, e.g. nodes=2,gpus_per_node=8 (also "
                                        "partition=P, time=24:00:00); requeued on preemption, resuming exactly."),
) -> None:
    """Pretrain a backbone with LeJEPA on a recipe's data: from scratch, or continued from foundation weights."""
    options = {k: v for k, v in locals().items() if v is not None and k not in ("ctx", "recipe", "devices", "slurm")}
    if not skip_bad_samples:  # the flag only switches skipping on; off is the default
        options.pop("skip_bad_samples")
    if slurm is not None:
        from .train.slurm import submit_pretrain

        submit_pretrain(slurm, recipe, {**options, "devices": devices})
        return
    from .train.clock import process_started

    if devices is not None:
        from .train.launch import launch, pretrain_preflight

        code = launch(devices, _argv(ctx), device=device, preflight=pretrain_preflight(recipe, **options))
        if code is not None:
            sys.exit(code)  # torchrun's exit code (0 when every process succeeded)
    from .train import pretrain as run

    result = run(recipe, started=process_started(), **options)  # the estimate and budget count the whole command
    if result.interrupted:  # the checkpoint is written; the shell's convention: 128 + signal (130 SIGINT, 143 SIGTERM)
        sys.exit(128 + (result.signal or 2))


@app.command("eval")
def eval_(
    recipe: Optional[str] = typer.Argument(None, help="Recipe name or path (default: the checkpoint's / latest run's)."),
    checkpoint: Optional[Path] = typer.Option(None, "--checkpoint", help="Run folder with backbone.json "
                                              "(default: the newest under runs/), or an exported model: "
                                              "local-dir:DIR or hf-hub:ORG/NAME."),
    baseline: Optional[List[str]] = typer.Option(None, "--baseline", help="dinov2, dinov2-b, dinov2-l, dinov3, "
                                                 "dinov3-b, dinov3-l, random or pixels; repeat for several."),
    weights: Optional[List[str]] = typer.Option(None, "--weights", help="DINOv2 weights file (.safetensors, .pth or "
                                                "Meta's checkpoint); NAME=FILE when several DINOv2 baselines."),
    out: Optional[Path] = typer.Option(None, "--out", help="Report folder (default: RUN_DIR/eval)."),
    device: str = typer.Option("auto", "--device", help="auto, cpu, cuda, cuda:N or mps."),
    data: Optional[str] = typer.Option(None, "--data", help="Local copy of the data (default: the run's)."),
    dinov2_size: int = typer.Option(224, "--dinov2-size", help="DINOv2 input side (multiple of 14)."),
    dinov2_pool: str = typer.Option("cls", "--dinov2-pool", help="cls or cls+mean (CLS ⊕ mean patch token)."),
    adapter: Optional[str] = typer.Option(None, "--adapter", help="How DINOv2 takes non-RGB data: auto, "
                                          "bands:A,B,C (indices or band names), mean or pca."),
    batch_size: int = typer.Option(256, "--batch-size", help="Images per feature-extraction batch."),
    cache_dir: Optional[Path] = typer.Option(None, "--cache-dir", help="Feature cache (default: "
                                             "~/.cache/lejepa-domains/features)."),
    no_cache: bool = typer.Option(False, "--no-cache", help="Recompute features, write no cache."),
    bootstrap: int = typer.Option(1000, "--bootstrap", help="Bootstrap resamples for the 95% CIs."),
    seed: int = typer.Option(0, "--seed", help="Seed of support sets, carved val split and bootstrap."),
    no_plots: bool = typer.Option(False, "--no-plots", help="Skip the PNG plots."),
    skip_bad_samples: Optional[bool] = typer.Option(None, "--skip-bad-samples/--no-skip-bad-samples",
                                                    help="Leave out undecodable images (default: as the run did)."),
    leakage: bool = typer.Option(True, "--leakage/--no-leakage", help="Audit val/test against the pretraining "
                                 "pool (exact, perceptual-hash and feature near duplicates)."),
    drop_leaked: Optional[str] = typer.Option(None, "--drop-leaked", help="Also evaluate with the flagged test "
                                              "images removed: hash (exact or perceptual hash) or all (also "
                                              "features)."),
    select: Optional[str] = typer.Option(None, "--select", help="Evaluate the run's snapshot picked by label-free "
                                         "(lowest loss), label-free:sigreg, label-free:rankme, probe (val kNN), "
                                         "last or epoch:N (needs pretrain --keep-snapshots)."),
    stream: Optional[bool] = typer.Option(None, "--stream/--no-stream", help="Sharded recipes: extract features "
                                          "from the shards in one streamed pass per backbone, or decode the splits "
                                          "once (default: as their decoded size decides)."),
    num_workers: Optional[int] = typer.Option(None, "--num-workers", help="DataLoader workers of a streamed pass "
                                              "(default: up to 4)."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace the report already in --out (its files, "
                                   "plots included, are removed first)."),
    embedding_map: str = typer.Option("pca", "--map", help="The report's embedding map: pca, tsne (scikit-learn) "
                                      "or umap (needs the umap extra)."),
) -> None:
    """Frozen-backbone evaluation: kNN, linear and few-shot probes of a run vs DINOv2 / random / pixels."""
    from .evaluate.run import evaluate as run

    run(recipe, checkpoint=checkpoint, baselines=tuple(baseline or ()), weights=list(weights) if weights else None,
        out=out, device=device, data=data, dinov2_size=dinov2_size, dinov2_pool=dinov2_pool, batch_size=batch_size,
        cache_dir=cache_dir, use_cache=not no_cache, n_boot=bootstrap, seed=seed, plots=not no_plots,
        skip_bad_samples=skip_bad_samples, adapter=adapter, leakage=leakage, drop_leaked=drop_leaked, select=select,
        stream=stream, num_workers=num_workers, embedding_map=embedding_map, overwrite=overwrite)


@app.command("embed")
def embed(
    ctx: typer.Context,
    recipe: Optional[str] = typer.Argument(None, help="Recipe name or path (default: the backbone run's recipe)."),
    backbone: Optional[str] = typer.Option(None, "--backbone", help="Run folder, local-dir:DIR, hf-hub:ORG/NAME, "
                                           "dinov2, dinov2-b, dinov2-l, dinov3, dinov3-b, dinov3-l, "
                                           "timm:NAME (with --weights), random or pixels (default: the latest run)."),
    out: Path = typer.Option(..., "--out", help="Folder for the Parquet parts, manifest.json and embeddings.json."),
    split: str = typer.Option("all", "--split", help="all, train, val or test."),
    data: Optional[str] = typer.Option(None, "--data", help="Local copy of the data (image folder, Parquet, "
                                       "save_to_disk, NPZ/HDF5/TIFF/FITS, shards) for the recipe."),
    run: Optional[Path] = typer.Option(None, "--run", help="With --backbone random: the run whose architecture "
                                       "is initialised at random."),
    weights: Optional[str] = typer.Option(None, "--weights", help="Weights file of a dinov2*/dinov3*/timm:NAME "
                                          "backbone."),
    dtype: str = typer.Option("float16", "--dtype", help="Vector type in the Parquet parts: float16 or float32."),
    chunk_size: int = typer.Option(4096, "--chunk-size", help="Rows per Parquet part (a killed run redoes at most "
                                   "one part per process)."),
    batch_size: int = typer.Option(256, "--batch-size", help="Images per encoding batch."),
    device: str = typer.Option("auto", "--device", help="auto, cpu, cuda, cuda:N or mps."),
    devices: Optional[int] = typer.Option(None, "--devices", help="Run N processes (one per GPU, or gloo "
                                          "processes on CPU) through torchrun; each writes its own parts."),
    skip_bad_samples: bool = typer.Option(False, "--skip-bad-samples", help="Skip (count and name) images that "
                                          "cannot be decoded instead of stopping."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace another embedding in --out."),
    dinov2_size: int = typer.Option(224, "--dinov2-size", help="DINOv2/DINOv3 input side."),
    dinov2_pool: str = typer.Option("cls", "--dinov2-pool", help="cls or cls+mean."),
    adapter: Optional[str] = typer.Option(None, "--adapter", help="How DINOv2 takes non-RGB data: auto, "
                                          "bands:A,B,C, mean or pca."),
    pixels_size: int = typer.Option(32, "--pixels-size", help="Largest side of the raw-pixel backbone."),
    seed: int = typer.Option(0, "--seed", help="Seed of the random backbone's init."),
) -> None:
    """Embed every image of a recipe's splits (or --data) with a frozen backbone into chunked Parquet files."""
    from .embeddings.run import embed as run_embed
    from .embeddings.run import plan_embed

    kwargs = dict(split=split, data=data, run=run, weights=weights, dtype=dtype, chunk_size=chunk_size,
                  batch_size=batch_size, device=device, skip_bad_samples=skip_bad_samples, overwrite=overwrite,
                  dinov2_size=dinov2_size, dinov2_pool=dinov2_pool, adapter=adapter, pixels_size=pixels_size,
                  seed=seed)
    if devices is not None:
        from .train.launch import launch

        code = launch(devices, _argv(ctx), device=device,
                      preflight=lambda: plan_embed(recipe, backbone, out, **kwargs))
        if code is not None:
            sys.exit(code)
    run_embed(recipe, backbone, out, **kwargs)


@app.command("search")
def search(
    embeddings: Path = typer.Argument(..., help="Folder written by `lejepa-domains embed`."),
    query: List[str] = typer.Option(..., "--query", help="An id of the embeddings (train/12) or an image file "
                                    "(embedded with the same backbone); repeat for several."),
    k: int = typer.Option(16, "--k", help="Neighbours per query."),
    index: str = typer.Option("auto", "--index", help="auto (exact up to 5M vectors, else ivf), exact, ivf or "
                              "hnsw (faiss)."),
    grid: Path = typer.Option(Path("search.png"), "--grid", help="PNG grid of each query and its neighbours."),
    no_grid: bool = typer.Option(False, "--no-grid", help="Write no PNG."),
    device: str = typer.Option("auto", "--device", help="auto, cpu, cuda, cuda:N or mps."),
) -> None:
    """Cosine nearest neighbours of images (by id or image file) in an embeddings folder: a table and a PNG grid."""
    from .embeddings.search import search as run_search

    run_search(embeddings, query, k, index=index, device=device, grid=None if no_grid else grid)


@app.command("outliers")
def outliers(
    embeddings: Path = typer.Argument(..., help="Folder written by `lejepa-domains embed`."),
    top: int = typer.Option(64, "--top", help="Strangest images shown in the PNG grid."),
    k: int = typer.Option(10, "--k", help="Nearest neighbours the score averages over."),
    out: Path = typer.Option(Path("outliers.csv"), "--out", help="Ranked list of every image: .csv or .parquet."),
    grid: Path = typer.Option(Path("outliers.png"), "--grid", help="PNG grid of the strangest images."),
    no_grid: bool = typer.Option(False, "--no-grid", help="Write no PNG."),
    index: str = typer.Option("auto", "--index", help="auto, exact, ivf or hnsw (faiss)."),
    device: str = typer.Option("auto", "--device", help="auto, cpu, cuda, cuda:N or mps."),
) -> None:
    """kNN-distance outlier score of every embedded image: the ranked list and a PNG of the strangest."""
    from .embeddings.outliers import outliers as run_outliers

    run_outliers(embeddings, top, k, out=out, grid=None if no_grid else grid, index=index, device=device)


@app.command("export")
def export(
    run_dir: Path = typer.Argument(..., help="Run folder (holding backbone.json) to export."),
    to: Optional[Path] = typer.Option(None, "--to", help="Folder to write: config.json + model.safetensors (timm "
                                      "`local-dir:`) and README.md (model card)."),
    push: Optional[str] = typer.Option(None, "--push", help="Also upload to this Hugging Face model repository "
                                       "ORG/NAME (private unless --public)."),
    public: bool = typer.Option(False, "--public", help="With --push: create the repository public."),
    eval_report: Optional[Path] = typer.Option(None, "--eval-report", help="Evaluation report.json (or its folder) "
                                               "for the card (default: RUN_DIR/eval/report.json of these weights)."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace a non-empty --to folder."),
) -> None:
    """Export a run's backbone for timm / the Hugging Face Hub, with a model card written from the run."""
    from .export import export_run
    from .export.summary import print_export

    print_export(export_run(run_dir, to, push=push, private=not public, eval_report=eval_report,
                            overwrite=overwrite, log=lambda m: err_console.print(m, highlight=False, soft_wrap=True)))


@app.command("ablate")
def ablate(
    recipe: Optional[str] = typer.Argument(None, help="Recipe name or path (with --list: show its grids)."),
    study: Optional[str] = typer.Option(None, "--study", help="lambda, views, heuristics, regularizer, slices, "
                                        "masking or schedule (see --list)."),
    budget: str = typer.Option("tiny", "--budget", help="tiny (smoke run), small, full (paper-scale grid); toy: "
                               "tests only."),
    out: Optional[Path] = typer.Option(None, "--out", help="Root folder (default: runs/ablate-RECIPE); the study "
                                       "writes OUT/STUDY/."),
    seeds: Optional[int] = typer.Option(None, "--seeds", help="Seeds per variant (default: the budget's)."),
    device: str = typer.Option("auto", "--device", help="auto, cpu, cuda, cuda:N or mps."),
    data: Optional[str] = typer.Option(None, "--data", help="Local copy of the data instead of the recipe's source."),
    list_: bool = typer.Option(False, "--list", help="Show the studies, their grids and the budgets, then exit."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace a finished study's report (its runs are "
                                   "reused)."),
    trust_checkpoint: bool = typer.Option(False, "--trust-checkpoint", help="Load run checkpoints under --out that "
                                          "the safe loader refuses (unpickling can run code: only files you wrote)."),
) -> None:
    """Ablation study: a small grid of pretraining runs, each evaluated by the standard protocol; one report."""
    if list_:
        from .recipe import load_recipe
        from .studies.ablation_report import print_studies

        print_studies(_Console(), load_recipe(recipe) if recipe else None)
        return
    if recipe is None or study is None:
        raise UserError("ablate needs RECIPE and --study NAME (e.g. `lejepa-domains ablate specimens --study "
                        "heuristics --budget tiny`); `lejepa-domains ablate --list` shows the studies")
    from .runs import trusted_checkpoints
    from .studies import ablate as run

    with trusted_checkpoints(trust_checkpoint):
        run(recipe, study, budget, out=out, seeds=seeds, device=device, data=data, overwrite=overwrite)


@app.command("compare")
def compare(
    recipe: str = typer.Argument("specimens", help="Recipe name or path."),
    foundation: str = typer.Option("dinov2", "--foundation", help="dinov2, dinov2-b, dinov2-l, dinov3, dinov3-b, "
                                   "dinov3-l, timm:MODEL_NAME (with --weights), a run folder or local-dir:DIR."),
    weights: Optional[Path] = typer.Option(None, "--weights", help="The foundation weights file (default: the HF "
                                           "cache, else the hub)."),
    budget: str = typer.Option("tiny", "--budget", help="tiny, small or full (the scratch runs' length, seeds); "
                               "toy: tests only."),
    seeds: Optional[int] = typer.Option(None, "--seeds", help="Seeds per trained arm (default: the budget's)."),
    out: Optional[Path] = typer.Option(None, "--out", help="Folder (default: runs/compare-RECIPE)."),
    adapt_epochs: Optional[int] = typer.Option(None, "--adapt-epochs", help="Epochs of the adapted runs (default: "
                                               "a tenth of the scratch runs', at least 1)."),
    init_patch: str = typer.Option("auto", "--init-patch", help="Patch of the adapted backbone: auto or pixels."),
    adapt: Optional[str] = typer.Option(None, "--adapt", help="Adapted arms, one per mode: MODE[,MODE…] of full, "
                                        "lora[:RANK], partial:N, explora[:N,RANK] (default: full)."),
    dinov2_size: int = typer.Option(224, "--dinov2-size", help="Input side of the frozen foundation model."),
    device: str = typer.Option("auto", "--device", help="auto, cpu, cuda, cuda:N or mps."),
    data: Optional[str] = typer.Option(None, "--data", help="Local copy of the data instead of the recipe's source."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace a finished comparison's report (its runs "
                                   "are reused)."),
    trust_checkpoint: bool = typer.Option(False, "--trust-checkpoint", help="Load run checkpoints under --out that "
                                          "the safe loader refuses (unpickling can run code: only files you wrote)."),
) -> None:
    """Scratch, transfer or adapt? LeJEPA from scratch vs the frozen foundation model vs both combined; one report."""
    from .runs import trusted_checkpoints
    from .studies import compare as run

    with trusted_checkpoints(trust_checkpoint):
        run(recipe, foundation, weights, budget, out=out, seeds=seeds, device=device, data=data,
            adapt_epochs=adapt_epochs, init_patch=init_patch, dinov2_size=dinov2_size, adapt=adapt,
            overwrite=overwrite)


@recipes_app.callback()
def recipes_list(ctx: typer.Context) -> None:
    """List the built-in recipes (name, source, size, classes)."""
    if ctx.invoked_subcommand is not None:
        return
    from .ui.recipes import print_recipes

    print_recipes()


@recipes_app.command("show")
def recipes_show(name: str = typer.Argument(..., help="Recipe name or path."),
                 as_json: bool = typer.Option(False, "--json", help="Every resolved setting as JSON (for tools).")
                 ) -> None:
    """Show a recipe: a readable summary (source, splits, images, classes, views, training, card)."""
    from .ui.recipes import print_recipe

    print_recipe(name, as_json=as_json)


@recipes_app.command("new")
def recipes_new(
    name: str = typer.Argument(..., help="Recipe name: writes NAME.py (recipe) and NAME.md (data-card stub)."),
    hf: Optional[str] = typer.Option(None, "--hf", help="Hugging Face dataset id (reachable or already cached)."),
    data: Optional[str] = typer.Option(None, "--data", help="Local copy: save_to_disk folder, parquet/arrow files, "
                                       "ImageFolder tree, MedMNIST .npz or Galaxy10 .h5."),
    out: Path = typer.Option(Path("."), "--out", help="Folder for NAME.py and NAME.md."),
    config: Optional[str] = typer.Option(None, "--config", help="Hub dataset config."),
    revision: Optional[str] = typer.Option(None, "--revision", help="Hub commit to pin."),
    image_column: Optional[str] = typer.Option(None, "--image-column", help="Image column (default: inferred)."),
    label_column: Optional[str] = typer.Option(None, "--label-column", help="Label column (default: inferred)."),
    force: bool = typer.Option(False, "--force", help="Overwrite existing NAME.py / NAME.md."),
    minutes: Optional[float] = typer.Option(None, "--minutes", help="Wall time the first run should take (default: "
                                            "10 on CPU, 30 on GPU); sets the epochs."),
    for_device: str = typer.Option("auto", "--for-device", help="Device the defaults are for: auto (this machine), "
                                   "cpu, cpu:CORES, cuda, cuda:GIB."),
) -> None:
    """Write a recipe and a data-card stub for a new dataset, inferred from the data."""
    from .recipe_tools import new_recipe
    from .ui.recipes import print_new

    print_new(new_recipe(name, hf=hf, data=data, out=out, config=config, revision=revision,
                         image_column=image_column, label_column=label_column, force=force, minutes=minutes,
                         for_device=for_device))


@recipes_app.command("check")
def recipes_check(
    recipe: str = typer.Argument(..., help="Recipe file (or built-in name) to check."),
    data: Optional[str] = typer.Option(None, "--data", help="Local copy of the data instead of the recipe's source."),
    out: Path = typer.Option(Path("."), "--out", help="Folder for NAME-views.png."),
    samples: int = typer.Option(6, "--samples", help="Images shown in the PNG grid."),
    leakage: bool = typer.Option(False, "--leakage", help="Also load every image and audit val/test against train "
                                 "for exact and perceptual-hash duplicates."),
) -> None:
    """Load a few samples, validate the recipe, measure normalisation, save a PNG of the views."""
    from .recipe_tools import check_recipe
    from .ui.recipes import print_check

    print_check(check_recipe(recipe, data=data, out=out, samples=samples, leakage=leakage))


@app.command("shards")
def shards(
    source: Optional[str] = typer.Argument(None, help="Local copy (ImageFolder, parquet/arrow, save_to_disk, npz) or "
                                           "a recipe name / .py file."),
    out: Path = typer.Option(Path("shards"), "--out", help="Folder for SPLIT-000000.tar …"),
    hf: Optional[str] = typer.Option(None, "--hf", help="Hugging Face dataset id instead of SOURCE."),
    maxcount: int = typer.Option(1000, "--maxcount", help="Samples per shard."),
    image_column: str = typer.Option("image", "--image-column", help="Image column of tabular data."),
    label_column: str = typer.Option("label", "--label-column", help="Label column of tabular data."),
    split: Optional[List[str]] = typer.Option(None, "--split", help="Only these splits (repeat)."),
) -> None:
    """Write WebDataset tar shards (for streaming) from a local copy, a hub dataset or a recipe."""
    from .recipe_tools.shard_writer import write_shards

    res = write_shards(source, out, hf=hf, maxcount=maxcount, image_column=image_column, label_column=label_column,
                       splits=split)
    for name, v in res.splits.items():
        err_console.print(f"{name}: {v['samples']:,} samples in {v['shards']} shard(s): {v['pattern']}",
                          highlight=False)
    typer.echo(res.source_text())


@app.command("card")
def card(name: str = typer.Argument(..., help="Recipe name, recipe file or card .md file.")) -> None:
    """Print a recipe's data card."""
    from .ui.recipes import print_card

    print_card(name)


def _click_error(e: BaseException) -> Optional[BaseException]:
    """``e`` if it is one of click's exceptions — of the click package or of the copy a typer release bundles
    (typer ≥ 0.2x raises ``typer._click.exceptions.*``), recognised by class name so any bundled copy counts."""
    names = {c.__name__ for c in type(e).__mro__}
    return e if names & {"ClickException", "Abort", "Exit"} else None


def _command_path(e: BaseException, argv: List[str]) -> str:
    """``lejepa-domains pretrain`` for an error inside that command, also when click reports it at the root."""
    ctx = getattr(e, "ctx", None)
    path = getattr(ctx, "command_path", None) or "lejepa-domains"
    if " " not in path:
        import typer.main

        group = typer.main.get_command(app)
        words = [a for a in argv if not a.startswith("-")][:2]
        if words and words[0] in getattr(group, "commands", {}):
            path = f"{path} {words[0]}"
            sub = group.commands[words[0]]
            if len(words) > 1 and words[1] in getattr(sub, "commands", {}):
                path = f"{path} {words[1]}"
    return path


def _given_value(e: BaseException, argv: List[str]) -> Optional[str]:
    """The value the user typed for the option a BadParameter error is about (``--epochs 1.5`` → ``1.5``)."""
    param = getattr(e, "param", None)
    for opt in getattr(param, "opts", None) or ():
        for i, a in enumerate(argv):
            if a == opt and i + 1 < len(argv):
                return argv[i + 1]
            if a.startswith(opt + "="):
                return a[len(opt) + 1:]
    return None


def _usage_line(e: BaseException, argv: List[str]) -> str:
    """One line: the command, what was wrong (click names the option and what it expects), where to look."""
    path = _command_path(e, argv)
    msg = " ".join(str(e.format_message() if hasattr(e, "format_message") else e).split()).rstrip(".")
    for hint in (" Did you mean", " Possible options:"):
        if hint in msg:
            head, tail = msg.split(hint, 1)
            msg = f"{head.rstrip('.')} ({hint.strip().lower()}{tail.rstrip('.')})"
    given = _given_value(e, argv) if type(e).__name__ == "BadParameter" else None
    if given is not None:
        msg += f" (got {given!r})"
    return f"{path}: {msg}; see '{path} --help'"


def _one_line(msg: str) -> str:
    """A user error raised in a DataLoader worker comes back wrapped ("Caught DataError in DataLoader worker
    process 0. Original Traceback …"): its own message is the last line of that traceback."""
    if "Original Traceback" not in msg:
        return msg
    last = [ln for ln in msg.splitlines() if ln.strip()][-1]
    head, sep, rest = last.partition(": ")
    return rest if sep and "Error" in head else last


def _error_line(msg: str) -> None:
    """Print ``error: msg``; one of several torchrun processes names its rank, and only the first process of the
    run to fail prints (lejepa_domains.train.distributed.first_to_fail), so the user reads one line."""
    if os.environ.get("WORLD_SIZE", "1") not in ("", "0", "1"):
        from .train.distributed import first_to_fail, launched_rank

        if not first_to_fail():
            return
        rank, world = launched_rank() or (0, 1)
        msg = f"rank {rank} of {world}: {msg}"
    err_console.print(f"[bold red]error:[/] {escape(msg)}", highlight=False, soft_wrap=True)


def _peer_loss_exit(e: BaseException) -> None:
    """Under torchrun, a collective that failed because another process went away: that process printed the
    error (or died without a word, then this line says so); stop quietly with exit 3 instead of a traceback."""
    if os.environ.get("WORLD_SIZE", "1") in ("", "0", "1"):
        return
    from .train.distributed import PEER_LOST_EXIT, is_peer_loss
    from .train.launch import AGENT_ENV

    if not is_peer_loss(e):
        return
    if os.environ.get(AGENT_ENV) == "1":  # started by `--devices`: its agent names the process that went away
        sys.exit(PEER_LOST_EXIT)
    _error_line("another process of this run stopped without an error line (killed, out of memory, or a crash: "
                "see the output above); the run folder keeps the last checkpoint written, resume with --resume")
    sys.exit(PEER_LOST_EXIT)


def _help_width() -> None:
    """``--help`` at the terminal's width, at least 100 columns (a pipe or log: 100, or $COLUMNS), so that no help
    text is cut with an ellipsis at 80 columns; typer's own $TERMINAL_WIDTH still wins."""
    import typer.rich_utils  # lazy on purpose: the help's rich machinery, loaded only by typer when printing help

    if not os.environ.get("TERMINAL_WIDTH"):
        typer.rich_utils.MAX_WIDTH = max(100, shutil.get_terminal_size((100, 24)).columns)


def _argv(ctx: typer.Context) -> List[str]:
    """The command line main() was called with (``--devices`` re-launches it through torchrun)."""
    return list((ctx.obj or {}).get("argv") or sys.argv[1:])


def main(argv: Optional[List[str]] = None) -> None:
    """Console-script entry point: user errors — bad data, bad recipes and usage errors alike — become one red
    ``error:`` line and exit code 2, never a traceback."""
    _help_width()
    args = list(argv) if argv is not None else sys.argv[1:]
    try:
        app(args=args, standalone_mode=False, obj={"argv": args})  # `--devices` re-launches this command line
    except UserError as e:
        _error_line(_one_line(str(e)))
        sys.exit(e.exit_code)
    except SystemExit:
        raise
    except KeyboardInterrupt:
        err_console.print("[bold red]interrupted[/]")
        sys.exit(130)
    except Exception as e:
        ce = _click_error(e)
        if ce is None:
            _peer_loss_exit(e)
            raise
        kind = {c.__name__ for c in type(ce).__mro__}
        if "Exit" in kind:  # --help, --version, typer.Exit(code)
            sys.exit(getattr(ce, "exit_code", 0) or 0)
        if "Abort" in kind:
            err_console.print("[bold red]aborted[/]")
            sys.exit(130)
        if "NoArgsIsHelpError" in kind:  # the bare command (click ≥ 8.2 raises; older releases print and exit 0)
            typer.echo(ce.format_message())
            sys.exit(0)
        err_console.print(f"[bold red]error:[/] {_usage_line(ce, args)}", highlight=False, soft_wrap=True)
        sys.exit(2)


if __name__ == "__main__":  # pragma: no cover
    main()
