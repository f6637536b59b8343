"""The Hugging Face model card (``README.md``) of an exported backbone, written from the run alone.

Front matter through :class:`huggingface_hub.ModelCardData` (licence, datasets, tags, pipeline tag, library, and the
``model-index`` of the evaluation when there is one); the prose: how to load it (RGB and N-channel), the recipe
(method, views, backbone), the data card summary (source, revision, licence, splits), the training configuration and
compute, the health figures per epoch, and the evaluation table with its protocol and intervals. Every number comes
from the run folder (``config.json``, ``metrics.jsonl``, ``backbone.json``) or the evaluation report of these weights;
an evaluation report of other weights (an older export of the run) is left out and the card says so.
"""

from __future__ import annotations

from dataclasses import dataclass
from types import SimpleNamespace
from typing import Any

import numpy as np

from ..data.pixels import PixelScaling
from .licence import LicenceReading

__all__ = ["build_card", "data_card_of", "LEJEPA_CITATION"]

LEJEPA_CITATION = ("Balestriero & LeCun, \"LeJEPA: Provable and Scalable Self-Supervised Learning Without the "
                   "Heuristics\", arXiv:2511.08544 (2025)")


def data_card_of(config: dict | None, meta: dict) -> Any | None:
    """The parsed data card of the run's recipe (built-in ``data_cards/NAME.md`` or ``NAME.md`` beside a user
    recipe file), or None when there is none."""
    from ..data.cards import find_card, parse_card
    from ..errors import UserError

    rec = (config or {}).get("recipe") or {}
    name = rec.get("card") or rec.get("name") or meta.get("recipe")
    if not name:
        return None
    path = find_card(SimpleNamespace(card_name=name, path=rec.get("path")))
    if path is None:
        return None
    try:
        return parse_card(path)
    except UserError:
        return None


# ------------------------------------------------------------------------------------------------------- helpers

def _pct(v: Any) -> str:
    return "–" if v is None or not np.isfinite(float(v)) else f"{100 * float(v):.1f} %"


def _num(v: Any, fmt: str = ".3g") -> str:
    try:
        return format(float(v), fmt)
    except (TypeError, ValueError):
        return "–"


def _md(text: Any) -> str:
    """One line, safe inside a Markdown table cell."""
    return " ".join(str(text).split()).replace("|", "\\|")


def _source_line(front: dict) -> tuple[str, str | None]:
    """(human source line, hub dataset id or None)."""
    src = front.get("source") if isinstance(front.get("source"), dict) else {}
    hub = src.get("hub_id") if isinstance(src.get("hub_id"), str) else None
    what = hub or src.get("package") or src.get("path") or src.get("url") or src.get("kind") or "not stated"
    rev = src.get("revision")
    line = f"`{what}`" + (f" at revision `{_md(rev)}`" if rev else "")
    if src.get("kind"):
        line += f" ({_md(src['kind'])})"
    return line, hub


def _split_rows(front: dict, config: dict | None) -> list[str]:
    splits = front.get("splits") if isinstance(front.get("splits"), dict) else {}
    rows = [f"| {role} | {_md(splits[role])} |" for role in ("train", "val", "test") if role in splits]
    lines = ["| split | images |", "|---|---|", *rows] if rows else []
    if splits.get("method"):
        lines += ["", f"How the splits were made: {_md(splits['method'])}"
                  + (f" (seed {splits['seed']})." if "seed" in splits else ".")]
    return lines


# --------------------------------------------------------------------------------------------------- the card

@dataclass(frozen=True)
class _Facts:
    """What every section of the card reads: the run's config parts, the data card's front matter, the exported
    model's facts."""

    cfg: dict
    rec: dict
    train: dict
    front: dict
    recipe_name: str
    arch: str
    title: Any
    source_line: str
    hub_id: str | None
    pc: dict
    channels: int
    size: int
    scaling: PixelScaling


def _facts(meta: dict, config: dict | None, data_card: Any | None, timm_cfg: dict) -> _Facts:
    cfg = config or {}
    rec = cfg.get("recipe") or {}
    front = data_card.front if data_card is not None else {}
    recipe_name = rec.get("name") or meta.get("recipe") or "?"
    source_line, hub_id = _source_line(front) if front else ("not stated (no data card found)", None)
    return _Facts(cfg=cfg, rec=rec, train=cfg.get("train") or {}, front=front, recipe_name=recipe_name,
                  arch=meta["timm_name"], title=front.get("title") or recipe_name, source_line=source_line,
                  hub_id=hub_id, pc=timm_cfg["pretrained_cfg"], channels=int(meta["channels"]),
                  size=int(meta["input_size"][-1]), scaling=PixelScaling.from_dict(meta.get("pixels")))


def build_card(*, repo_name: str, meta: dict, config: dict | None, metrics: list[dict], data_card: Any | None,
               report: dict | None, report_note: str | None, licence: LicenceReading, timm_cfg: dict):
    """The :class:`huggingface_hub.ModelCard` of an exported run (see the module docstring), section by section."""
    from huggingface_hub import ModelCard  # the hub's client: imported where a card is made (as in export/hub.py)

    f = _facts(meta, config, data_card, timm_cfg)
    data = _card_data(f, repo_name, report, licence)
    L = (_usage_section(f, repo_name, meta, timm_cfg) + _licence_section(licence) + _data_section(f, data_card)
         + _recipe_section(f, meta) + _training_section(f, meta, metrics) + _health_section(meta, metrics)
         + _evaluation_section(f, report, report_note))
    text = f"---\n{data.to_yaml()}\n---\n\n" + "\n".join(L)
    return ModelCard(text)


def _card_data(f: _Facts, repo_name: str, report: dict | None, licence: LicenceReading):
    """The front matter: licence, datasets, tags, and the headline evaluation results."""
    from huggingface_hub import EvalResult, ModelCardData  # the hub's client, as in build_card

    rec, recipe_name, title, hub_id = f.rec, f.recipe_name, f.title, f.hub_id
    eval_results = []
    ref = (report or {}).get("models", {}).get("lejepa") if report else None
    if ref is not None:
        k = report["protocol"]["knn"]["headline_k"]
        test_split = ((rec.get("splits") or {}).get("test")) or "test"
        for metric, value, label in (("accuracy", ref["knn"]["top1"], f"kNN top-1 (k={k}, frozen features), %"),
                                     ("accuracy", ref["linear"]["top1"], "linear probe top-1 (frozen features), %"),
                                     ("balanced_accuracy", ref["linear"]["balanced_accuracy"],
                                      "linear probe balanced accuracy, %")):
            if value is None or not np.isfinite(value):
                continue
            eval_results.append(EvalResult(
                task_type="image-classification", task_name="frozen-feature classification",
                dataset_type=hub_id or recipe_name, dataset_name=str(title), dataset_split=str(test_split),
                metric_type=metric, metric_name=label, metric_value=round(100 * float(value), 2)))
    return ModelCardData(
        license=licence.hf_id, library_name="timm", pipeline_tag="image-feature-extraction",
        tags=["timm", "image-feature-extraction", "self-supervised", "lejepa", "lejepa-domains", recipe_name],
        datasets=[hub_id] if hub_id else None, model_name=repo_name,
        eval_results=eval_results or None, metrics=["accuracy"] if eval_results else None)


def _usage_section(f: _Facts, repo_name: str, meta: dict, timm_cfg: dict) -> list[str]:
    """Title, what the model is, how to use it with timm alone, its ``pretrained_cfg``."""
    rec, recipe_name, arch, title = f.rec, f.recipe_name, f.arch, f.title
    pc, channels, size, scaling = f.pc, f.channels, f.size, f.scaling
    L: list[str] = [f"# {repo_name}", ""]
    L += [f"A `{arch}` backbone ({meta.get('num_features', '?')}-d features, {channels} input channel(s), "
          f"{size} × {size} px) pretrained **from scratch** with LeJEPA self-supervision on **{_md(title)}** "
          f"(recipe `{recipe_name}`), exported by {_md(timm_cfg['lejepa_domains']['exported_by'])}. No labels were "
          "used for training; the evaluation below probes the frozen features.", ""]
    L += ["## How to use", "", "```python", "import timm, torch",
          (f'model = timm.create_model("hf-hub:{repo_name}", pretrained=True).eval()   # or "local-dir:PATH"'
           if "/" in repo_name else
           f'model = timm.create_model("local-dir:{repo_name}", pretrained=True).eval()  # hf-hub:ORG/NAME once uploaded'),
          "cfg = timm.data.resolve_data_config(model=model)     # input_size, mean, std of this recipe",
          "transform = timm.data.create_transform(**cfg)"]
    if scaling.is_uint8_default and channels in (1, 3):
        mode = "RGB" if channels == 3 else "L"
        L += [f'x = transform(PIL.Image.open("image.png").convert("{mode}")).unsqueeze(0)',
              f"features = model(x)                        # (1, {meta.get('num_features', 'F')})", "```",
              "", f"This gives exactly the features our evaluation uses for images of {size} × {size} px (how the "
              f"recipe stores them; larger images are resized on the shorter side to {size} px and centre-cropped by "
              "this transform, while the recipe's own loader resizes whole images — see the data card for how).", ""]
    else:
        L += [f"# images (C={channels}, H, W) as stored ({scaling.dtype}); scale them as the recipe does: "
              f"{scaling.text()}",
              "x = torch.as_tensor(image, dtype=torch.float32)",
              _scaling_code(scaling),
              "x = transform(x).unsqueeze(0)                        # resize/crop (no-op at "
              f"{size} px) and per-channel normalisation",
              f"features = model(x)                                  # (1, {meta.get('num_features', 'F')})", "```",
              "", f"timm's transform cannot read {channels}-channel {scaling.dtype} files itself: pass a float "
              f"tensor already scaled ({scaling.text()}); the transform then normalises it with the {channels} "
              "per-channel mean/std of `pretrained_cfg`. At "
              f"{size} × {size} px this gives exactly the features of our evaluation. "
              f"`config.json` records the scaling under `lejepa_domains.pixels`"
              + (f" and the band order: {', '.join(map(str, rec.get('band_names') or []))}." if rec.get("band_names")
                 else "."), ""]
    L += [f"`pretrained_cfg`: input_size {list(pc['input_size'])}, mean {_round(pc['mean'])}, std "
          f"{_round(pc['std'])}, interpolation {pc['interpolation']}, crop_pct {pc['crop_pct']}, num_classes 0 "
          "(pooled features, no classifier head).", ""]
    return L


def _licence_section(licence: LicenceReading) -> list[str]:
    """The licence (the training data's)."""
    L = ["## Licence", ""]
    L.append(f"`{licence.hf_id}` — **the licence follows the training data's**, as its data card states it: "
             f"\"{_md(licence.text)}\".")
    if not licence.clear:
        L.append(f"**The licence is unclear**: {licence.why}. Read the data card and the dataset's own terms before "
                 "reusing these weights, in particular commercially.")
    L += ["The lejepa-domains code that trained them is MIT.", ""]
    return L


def _data_section(f: _Facts, data_card: Any | None) -> list[str]:
    """The training data, from its data card."""
    cfg, rec, front, recipe_name, title = f.cfg, f.rec, f.front, f.recipe_name, f.title
    source_line, channels, size = f.source_line, f.channels, f.size
    L: list[str] = []
    L += ["## Training data", ""]
    if data_card is None:
        L += [f"No data card was found for recipe `{recipe_name}`: source, licence and splits are not documented "
              "here.", ""]
    else:
        L += [f"- **Dataset**: {_md(title)}", f"- **Source**: {source_line}",
              f"- **Licence**: {_md(front.get('licence', 'not stated'))}"]
        if front.get("citation"):
            L.append(f"- **Citation**: {_md(front['citation'])}")
        classes = front.get("classes")
        n_classes = len(classes) if isinstance(classes, list) else rec.get("num_classes")
        L.append(f"- **Images**: {front.get('image_size', size)} px, {front.get('channels', channels)} channel(s), "
                 f"{n_classes} classes (labels are used only by the evaluation)")
        if front.get("task"):
            L.append(f"- **Task**: {_md(front['task'])}")
        L += [""] + _split_rows(front, cfg) + [""]
    skipped = (cfg.get("skip_bad_samples") or {})
    if isinstance(skipped, dict) and skipped.get("count"):
        L += [f"Pretraining left out {skipped['count']} undecodable image(s) (`--skip-bad-samples`).", ""]
    return L


def _recipe_section(f: _Facts, meta: dict) -> list[str]:
    """The method and the recipe."""
    cfg, rec, train, arch, scaling = f.cfg, f.rec, f.train, f.arch, f.scaling
    L: list[str] = []
    L += ["## Recipe", ""]
    lam = train.get("lam")
    L += [f"LeJEPA ({LEJEPA_CITATION}): loss = (1 − λ) · invariance + λ · SIGReg with λ = {_num(lam)}; SIGReg is the "
          f"sliced Epps–Pulley test of the projections against an isotropic Gaussian ({train.get('num_slices', '?')} "
          "random directions redrawn every step); no EMA teacher, no stop-gradient, no predictor"
          + _variant_note(train) + ".", ""]
    L += [f"- **Backbone**: timm `{arch}`, arguments `{_md(meta.get('timm_kwargs'))}`, from random initialisation"
          + (f" (initialised from `{_md(cfg.get('init_from'))}`)" if cfg.get("init_from") else ""),
          f"- **Projector**: MLP {rec.get('proj_hidden')} → {rec.get('proj_dim')} ({rec.get('proj_norm', 'bn')})",
          f"- **Views**: {rec.get('n_global')} global × {rec.get('global_size')} px (scale "
          f"{rec.get('global_scale')}) + {rec.get('n_local')} local × {rec.get('local_size')} px (scale "
          f"{rec.get('local_scale')})",
          f"- **Global augmentations**: {_md('; '.join(rec.get('global_augment') or []) or 'the recipe default')}",
          f"- **Local augmentations**: {_md('; '.join(rec.get('local_augment') or []) or 'the recipe default')}",
          f"- **Pixels**: {scaling.text()}, then per-channel mean {_round(meta['mean'])} / std {_round(meta['std'])}",
          ""]
    return L


def _training_section(f: _Facts, meta: dict, metrics: list[dict]) -> list[str]:
    """Training configuration and compute."""
    cfg, train = f.cfg, f.train
    L: list[str] = []
    L += ["## Training configuration and compute", ""]
    done_epochs = metrics[-1]["epoch"] if metrics else meta.get("epoch")
    steps = metrics[-1].get("step") if metrics else meta.get("step")
    world = int(cfg.get("world_size") or 1)
    seconds = sum(float(m.get("epoch_seconds") or 0.0) for m in metrics)
    ips = [float(m["images_per_s"]) for m in metrics if m.get("images_per_s")]
    rows = [("epochs", f"{done_epochs} of {train.get('epochs', '?')}"), ("optimisation steps", steps),
            ("batch size", f"{train.get('batch_size')} per process × {world} process(es)"),
            ("optimiser", f"AdamW, lr {_num(train.get('lr'))}, weight decay {_num(train.get('weight_decay'))}, "
                          f"{train.get('schedule')} schedule, {_num(train.get('warmup_epochs'))} warm-up epoch(s)"),
            ("seed", train.get("seed")), ("precision", cfg.get("precision")),
            ("device", f"{cfg.get('device')} × {world}"),
            ("training time", f"{seconds / 60:.1f} min (sum of epoch times)" if seconds else "–"),
            ("throughput", f"{np.mean(ips):.1f} images/s (mean over epochs)" if ips else "–"),
            ("software", ", ".join(f"{k} {v}" for k, v in (cfg.get("versions") or {}).items()) or "–"),
            ("weights", f"sha256[:16] `{meta.get('weights_sha256_16')}` (epoch {meta.get('epoch')}, step "
                        f"{meta.get('step')})")]
    L += ["| | |", "|---|---|", *[f"| {k} | {_md(v)} |" for k, v in rows], ""]
    return L


def _health_section(meta: dict, metrics: list[dict]) -> list[str]:
    """Per-epoch health figures during training."""
    L: list[str] = []
    L += ["## Health during training", ""]
    if metrics:
        L += ["Per epoch (`metrics.jsonl`): loss, invariance, SIGReg (exact Gaussian samples give ≈ 1.06 per slice; "
              "a collapsed batch ≈ 0.41 × batch size), RankMe (effective rank of the backbone features, of "
              f"{meta.get('num_features', '?')}), online linear probe on the validation split (detached features).",
              "", "| epoch | loss | invariance | SIGReg | RankMe | probe val acc. | collapse |",
              "|---:|---:|---:|---:|---:|---:|---|"]
        for m in _thin(metrics, 12):
            L.append(f"| {m.get('epoch')} | {_num(m.get('loss'), '.4f')} | {_num(m.get('invariance'), '.4f')} | "
                     f"{_num(m.get('sigreg'), '.3f')} | {_num(m.get('rankme'), '.1f')} | "
                     f"{_pct(m.get('probe_val_acc')) if m.get('probe_val_acc') is not None else '–'} | "
                     f"{'**yes**' if m.get('collapse_warning') else 'no'} |")
        L.append("")
    else:
        L += ["No `metrics.jsonl` in the run folder.", ""]
    return L


def _evaluation_section(f: _Facts, report: dict | None, report_note: str | None) -> list[str]:
    """The evaluation, the files, the citations."""
    front = f.front
    L: list[str] = []
    L += ["## Evaluation (frozen features)", ""]
    if report is not None:
        L += _eval_section(report)
    else:
        L += [report_note or "No evaluation report of these weights was found; run `lejepa-domains eval "
              "--checkpoint RUN_DIR` and export again to add it.", ""]

    L += ["## Files", "", "- `config.json`: timm's model configuration (`architecture`, `model_args`, "
          "`pretrained_cfg`) and, under `lejepa_domains`, the recipe, pixel scaling and provenance of the run",
          "- `model.safetensors`: the backbone's weights (timm state dict, no projector or probe)",
          "- `README.md`: this card", ""]
    L += ["## Citation", "", f"- Method: {LEJEPA_CITATION}"]
    if front.get("citation"):
        L.append(f"- Data: {_md(front['citation'])}")
    L.append("")
    return L


def _round(values) -> list[float]:
    return [round(float(v), 4) for v in values]


def _scaling_code(sc) -> str:
    if sc.kind == "linear":
        return f"x = x / {sc.pixel_max:g}"
    if sc.kind == "asinh":
        return f"x = torch.asinh(x / {sc.softening:g})"
    return "# (no scaling: values as stored)"


def _variant_note(train: dict) -> str:
    parts = []
    if train.get("regularizer", "sigreg") != "sigreg":
        parts.append(f"regulariser **{train['regularizer']}** instead of SIGReg (an ablation run)")
    if train.get("target", "online") != "online":
        parts.append(f"target **{train['target']}** (an ablation run)")
    if train.get("method", "multicrop") != "multicrop":
        parts.append(f"method **{train['method']}** (an ablation run)")
    return (" — except: " + "; ".join(parts)) if parts else ""


def _thin(metrics: list[dict], n: int) -> list[dict]:
    """At most ``n`` epochs, always the first and the last."""
    if len(metrics) <= n:
        return metrics
    idx = sorted(set(np.linspace(0, len(metrics) - 1, n).round().astype(int).tolist()))
    return [metrics[i] for i in idx]


def _eval_section(report: dict) -> list[str]:
    """The side-by-side table (with 95 % intervals) and the protocol, from an evaluation report."""
    from ..evaluate.report import _cell, _label, columns, missing_lines

    r = report
    cols = columns(r)
    sp = r["splits"]
    L = [f"`lejepa-domains eval` on recipe `{r['recipe']['name']}`: train {sp['train']}, val {sp['val']} "
         f"({sp['val_source']['source']}), test {sp['test']} images; every backbone frozen, same splits, same "
         f"protocols (report of {r.get('created', '?')}).", ""]
    for line in missing_lines(r):
        L += [f"**Warning:** {line}.", ""]
    header = ["model"] + [h for _, h, _ in cols] + ["RankMe"]
    L.append("| " + " | ".join(header) + " |")
    L.append("|" + "|".join(["---"] + ["---:"] * (len(header) - 1)) + "|")
    for name, e in r["models"].items():
        row = [("**this model**" if name == "lejepa" else _label(name, e))]
        for _, _, get in cols:
            v, ci = get(e)
            row.append(_cell(v, ci))
        row.append(f"{e['diagnostics']['rankme']:.1f} / {e['diagnostics']['dim']}")
        L.append("| " + " | ".join(row) + " |")
    p = r["protocol"]
    L += ["", "Top-1 etc. in %, with 95 % intervals in brackets: percentile bootstrap over the test set "
          f"({p['metrics']['bootstrap']['resamples']} resamples) for kNN and linear, t-interval over "
          f"{p['fewshot']['n_sets']} support sets for few-shot. `random` is the same architecture at random init, "
          "`pixels` the raw image: the floors any pretraining must clear.", "",
          "Protocol:",
          f"- kNN: {p['knn']['similarity']}, {p['knn']['votes']}, T = {p['knn']['temperature']}, headline k = "
          f"{p['knn']['headline_k']}, neighbours from the {p['knn']['train']}.",
          f"- Linear probe: {p['linear']['features']}; {p['linear']['model']}; C ∈ "
          f"{{{', '.join(f'{c:g}' for c in p['linear']['C_grid'])}}} chosen on the validation split "
          f"({p['val']['source']}); test {p['linear']['test']}.",
          f"- Few-shot: {', '.join(map(str, p['fewshot']['shots']))} labelled images per class, "
          f"{p['fewshot']['n_sets']} support sets (seed {p['fewshot']['seed']}); {p['fewshot']['classifier']}.",
          f"- Frozen: {p['frozen']}.", ""]
    return L
