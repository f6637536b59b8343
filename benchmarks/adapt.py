"""Which ``--adapt`` mode should be the default? The measurement behind docs/how-to/adapt.md (issue 29).

1. A *foundation* is pretrained with this toolkit (LeJEPA from scratch, ``--foundation-minutes``) on a broad offline
   corpus: the union of several image sources that scikit-image and the test fixtures can build — the colour
   photograph tiles ``scenes64`` and the grey science/texture tiles ``grey40`` of ``benchmarks/scaffold_sets.py``,
   and the synthetic class images of ``tests/fixtures_data.py`` — all as RGB at ``--size`` px.
2. On each held-out target (sources not in the corpus: ``digits`` = scikit-learn's handwritten digits, ``faces`` =
   scikit-image's ``lfw_subset`` faces vs non-faces; grey, so the foundation's RGB patch embedding is adapted to one
   channel), for ``--seeds K`` seeds and at equal wall time (``--minutes`` per trained arm, ``pretrain
   --time-budget``): LeJEPA from scratch (the same architecture), and the foundation continued with LeJEPA under
   each ``--adapt`` mode (``pretrain --init FOUNDATION_RUN --adapt MODE``). The frozen foundation (the adapted arms'
   starting backbone, no training) is the transfer arm.
3. Every arm of a seed goes through one evaluation (``lejepa_domains.evaluate``: same splits, same bootstrap
   resamples of the test split): kNN@20 and linear-probe top-1; across seeds, means with Student-t 95 % intervals
   (``evaluate.metrics.t_interval``) and paired per-seed differences (adapted − transfer, adapted − scratch) with
   their t intervals (one seed: the evaluation's paired bootstrap interval). Compute per arm: wall seconds, steps,
   images seen (steps × batch), trainable parameters.

    python benchmarks/adapt.py --minutes 5 --foundation-minutes 20 --seeds 3 --out /tmp/adapt-bench \\
        --json adapt.json --md adapt.md

A learning-rate sweep adds arms to a finished run (only the new arms train; every arm is evaluated again):

    python benchmarks/adapt.py --minutes 2 --foundation-minutes 25 --seeds 3 --out /tmp/adapt-bench --targets digits \
        --variants "full@backbone_lr_scale=0.03,full@backbone_lr_scale=0.3"

Smoke (a few steps per run, proves the plumbing, measures nothing):

    python benchmarks/adapt.py --smoke --out /tmp/adapt-smoke

Needs an idle machine for real figures: every arm's length is a wall time. Run from the repository root with the
package installed (and peft, the ``adapt`` extra).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")
HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent / "tests"))

import numpy as np  # noqa: E402
from PIL import Image  # noqa: E402

import scaffold_sets  # noqa: E402

MODES = "full,lora,partial:2,explora"
TARGETS = ("digits", "faces")
RECIPE = """
from lejepa_domains import Recipe, TrainConfig
from lejepa_domains.data.hub import LocalSource

recipe = Recipe(name={name!r}, source=LocalSource({path!r}), num_classes={k}, image_size={size}, channels={c},
                mean={mean!r}, std={std!r}, global_size={size}, local_size={local}, n_global=2, n_local={n_local},
                backbone={arch!r}, backbone_kwargs={kwargs!r}, proj_hidden=(512,), proj_dim=64,
                train=TrainConfig(epochs=100, batch_size={batch}, lr=5e-4, num_slices=256, warmup_epochs=1,
                                  rankme_samples=512, num_workers={workers}))
"""


# ------------------------------------------------------------------------------------------------------ the data

def _read_tree(root: Path, size: int, rgb: bool) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """An ImageFolder tree (``train``/``test``/CLASS/*.png) as arrays at ``size`` px, RGB or grey."""
    out = {}
    for split in ("train", "test"):
        classes = sorted(p.name for p in (root / split).iterdir() if p.is_dir())
        xs, ys = [], []
        for c, name in enumerate(classes):
            for f in sorted((root / split / name).glob("*.png")):
                img = Image.open(f).convert("RGB" if rgb else "L").resize((size, size), Image.BICUBIC)
                xs.append(np.asarray(img))
                ys.append(c)
        out[split] = (np.stack(xs), np.asarray(ys))
    return out


def _subsample(x: np.ndarray, y: np.ndarray, n: int | None, seed: int) -> tuple[np.ndarray, np.ndarray]:
    if n is None or len(x) <= n:
        return x, y
    idx = np.sort(np.random.default_rng(seed).permutation(len(x))[:n])
    return x[idx], y[idx]


def _write_set(path: Path, train, test, max_train: int | None, seed: int = 0) -> dict:
    """MedMNIST-layout npz (train / val carved from train, 15 %, stratified by the seed / test)."""
    x, y = _subsample(*train, max_train, seed)
    rng = np.random.default_rng(seed)
    val = np.zeros(len(y), bool)
    for c in np.unique(y):
        idx = rng.permutation(np.flatnonzero(y == c))
        val[idx[: max(1, int(round(0.15 * len(idx))))]] = True
    xt, yt = _subsample(*test, None if max_train is None else max(20, max_train // 2), seed)
    arrays = {"train_images": x[~val], "train_labels": y[~val, None].astype(np.uint8),
              "val_images": x[val], "val_labels": y[val, None].astype(np.uint8),
              "test_images": xt, "test_labels": yt[:, None].astype(np.uint8)}
    np.savez_compressed(path, **arrays)
    c = 1 if x.ndim == 3 else x.shape[-1]
    flat = (x.reshape(len(x), -1, c) / 255.0)
    return {"path": str(path), "classes": int(len(np.unique(y))), "channels": c, "train": int((~val).sum()),
            "val": int(val.sum()), "test": int(len(yt)), "mean": [round(float(v), 4) for v in flat.mean((0, 1))],
            "std": [round(max(float(v), 1e-3), 4) for v in flat.std((0, 1))]}


def build_sets(root: Path, size: int, max_train: int | None) -> dict[str, dict]:
    """The foundation corpus (three sources, RGB) and the grey targets, as npz files under ``root``."""
    from fixtures_data import class_images

    root.mkdir(parents=True, exist_ok=True)
    raw = root / "raw"
    parts_train, parts_test = [], []
    for k, name in enumerate(("scenes64", "grey40")):
        d = _read_tree(scaffold_sets.make(name, raw), size, rgb=True)
        parts_train.append((d["train"][0], np.full(len(d["train"][0]), k)))
        parts_test.append((d["test"][0], np.full(len(d["test"][0]), k)))
    syn_x, _ = class_images(1200, 6, size, 3, seed=7)  # the fixtures' synthetic class images: a third source
    parts_train.append((syn_x[:1000].astype(np.uint8), np.full(1000, 2)))
    parts_test.append((syn_x[1000:].astype(np.uint8), np.full(200, 2)))
    corpus = (np.concatenate([p[0] for p in parts_train]), np.concatenate([p[1] for p in parts_train]))
    ctest = (np.concatenate([p[0] for p in parts_test]), np.concatenate([p[1] for p in parts_test]))
    sets = {"corpus": _write_set(root / "corpus.npz", corpus, ctest, None if max_train is None else 4 * max_train)}
    sets["corpus"]["sources"] = ["scenes64 (skimage colour photographs)", "grey40 (skimage grey images)",
                                 "synthetic class images (tests/fixtures_data.py)"]
    for target, src in (("digits", "digits8"), ("faces", "faces")):
        d = _read_tree(scaffold_sets.make(src, raw), size, rgb=False)
        sets[target] = _write_set(root / f"{target}.npz", d["train"], d["test"], max_train)
        sets[target]["sources"] = [{"digits": "scikit-learn load_digits", "faces": "scikit-image lfw_subset"}[target]]
    return sets


def write_recipe(root: Path, name: str, info: dict, a) -> Path:
    size = a.size
    kwargs = {"img_size": size, "patch_size": a.patch, "dynamic_img_size": True} if "vit" in a.arch else {}
    path = root / f"{name}.py"
    path.write_text(RECIPE.format(name=f"adapt-{name}", path=info["path"], k=info["classes"], size=size,
                                  c=info["channels"], mean=tuple(info["mean"]), std=tuple(info["std"]),
                                  local=size // 2, n_local=2 if a.smoke else 4, arch=a.arch, kwargs=kwargs,
                                  batch=a.batch_size, workers=a.num_workers))
    return path


# --------------------------------------------------------------------------------------------------- the arms

def _train(recipe: Path, out: Path, a, seed: int, **kw) -> dict:
    """One trained arm (reused when its folder holds a finished run of this seed)."""
    from lejepa_domains import pretrain
    from lejepa_domains.runs import RunDir

    run = RunDir(out)
    done = out / "bench_done.json"
    if done.is_file():
        return json.loads(done.read_text())
    t0 = time.perf_counter()
    res = pretrain(str(recipe), out=out, device=a.device, progress=False, overwrite=True, seed=seed,
                   time_budget=a.minutes * 60, max_steps=a.max_steps, **kw)
    if res.interrupted:  # a signal stopped it: never count a cut-short arm as done
        raise SystemExit(f"{out}: interrupted; run the benchmark again")
    wall = time.perf_counter() - t0
    cfg = run.read_config() or {}
    steps = run.checkpoint_step() or 0
    info = {"wall_seconds": round(wall, 2), "steps": steps, "images_seen": steps * a.batch_size,
            "trainable_parameters": (cfg.get("adapt") or {}).get("trainable"),
            "optimizer_state_bytes": (cfg.get("adapt") or {}).get("optimizer_state_bytes")}
    done.write_text(json.dumps(info))
    return info


def variant_arm(mode: str, opts: dict) -> str:
    """The arm (and folder) name of a mode with options: ``adapt_lora8_lr0p00015`` (no ``-``, no ``.``)."""
    from lejepa_domains.studies.compare import adapt_arm

    return adapt_arm(mode) + "".join(f"_{k.replace('_', '')}{v:g}".replace(".", "p").replace("-", "m")
                                     for k, v in opts.items())


def parse_variants(text: str) -> list[tuple[str, dict]]:
    """``MODE@FIELD=VALUE[;FIELD=VALUE],…`` (TrainConfig fields with float values, e.g.
    ``full@backbone_lr_scale=0.3,lora@lr=1.5e-4``) as ``[(mode, {field: value})]``."""
    out = []
    for item in filter(None, (x.strip() for x in text.split(","))):
        mode, _, rest = item.partition("@")
        opts = {k.strip(): float(v) for k, v in (kv.split("=", 1) for kv in rest.split(";") if kv.strip())}
        if not opts:
            raise SystemExit(f"--variants {item!r}: expected MODE@FIELD=VALUE, e.g. full@backbone_lr_scale=0.3")
        out.append((mode.strip(), opts))
    return out


def run_target(target: str, recipe: Path, foundation: Path, root: Path, a, modes: list[str],
               variants: list[tuple[str, dict]] = ()) -> dict:
    from lejepa_domains import load_recipe
    from lejepa_domains.evaluate.run import evaluate
    from lejepa_domains.studies.compare import _local_transfer_builder, adapt_arm
    from lejepa_domains.train.init import plan_init

    rec = load_recipe(str(recipe))
    _, record = plan_init(rec, str(foundation))
    arms = {adapt_arm(m): m for m in modes}
    options = {arm: {} for arm in arms}
    for mode, opts in variants:  # extra arms: a mode with other pretrain options (a learning-rate sweep)
        arm = variant_arm(mode, opts)
        arms[arm], options[arm] = mode + " (" + ", ".join(f"{k}={v:g}" for k, v in opts.items()) + ")", opts
    reports, compute = {}, {}
    for s in range(a.seeds):
        scratch = root / target / "scratch" / f"seed{s}"
        compute[("scratch", s)] = _train(recipe, scratch, a, s)
        for arm, mode in arms.items():
            compute[(arm, s)] = _train(recipe, root / target / arm / f"seed{s}", a, s, init=str(foundation),
                                       adapt=mode.split(" (")[0], **options[arm])
        pairs = [(arm, "transfer") for arm in arms] + [(arm, "lejepa") for arm in arms] + [("lejepa", "transfer")]
        evals = root / target / ("eval" if not variants else "eval-variants")  # a sweep keeps the first report
        reports[s] = evaluate(rec, checkpoint=scratch, baselines=["random"], out=evals / f"seed{s}",
                              overwrite=True, device=a.device, cache_dir=root / ".features", n_boot=a.n_boot,
                              plots=False, quiet=True, leakage=False, shots=(1, 5), n_sets=2,
                              extra_runs={**{arm: root / target / arm / f"seed{s}" for arm in arms},
                                          "transfer": _local_transfer_builder(str(foundation), record)},
                              pairs=pairs)
    return summarise(target, reports, compute, arms, a.seeds)


def _across(values: list[float], single_ci) -> dict:
    from lejepa_domains.evaluate.metrics import t_interval

    if not values:
        return {}
    if len(values) > 1:
        return {"mean": float(np.mean(values)), "ci95": t_interval(values), "ci_kind": "seeds (t, 95%)",
                "n": len(values)}
    return {"mean": float(values[0]), "ci95": single_ci, "ci_kind": "test bootstrap (95%)", "n": 1}


def summarise(target: str, reports: dict, compute: dict, arms: dict, seeds: int) -> dict:
    names = {"scratch": "lejepa", **{a: a for a in arms}, "transfer": "transfer", "random": "random"}
    rows = {}
    for arm, name in names.items():
        row = {"mode": arms.get(arm, arm)}
        for p in ("knn", "linear"):
            vals = [reports[s]["models"][name][p]["top1"] for s in range(seeds)]
            ci1 = reports[0]["models"][name][p].get("ci95", {}).get("top1")
            row[p] = _across(vals, ci1)
        cs = [compute.get((arm, s)) for s in range(seeds) if compute.get((arm, s))]
        feat = sum(float(reports[s]["models"][name].get("seconds", {}).get("features", 0.0)) for s in range(seeds))
        row["compute"] = {"wall_seconds": round(sum(c["wall_seconds"] for c in cs), 2),
                          "steps": sum(c["steps"] for c in cs), "images_seen": sum(c["images_seen"] for c in cs),
                          "trainable_parameters": next((c["trainable_parameters"] for c in cs
                                                        if c.get("trainable_parameters")), 0 if not cs else None),
                          "feature_seconds": round(feat, 2)}
        rows[arm] = row
    diffs = {}
    for arm in arms:
        for other, oname in (("transfer", "transfer"), ("scratch", "lejepa")):
            d = {}
            for p in ("knn", "linear"):
                per = [reports[s]["pairs"][f"{arm}-{oname}"][p]["top1"] for s in range(seeds)]
                d[p] = _across([x["diff"] for x in per], per[0].get("ci95"))
            diffs[f"{arm}-{other}"] = d
    return {"target": target, "arms": rows, "differences": diffs, "verdict": verdict(target, rows, diffs, arms)}


def verdict(target: str, rows: dict, diffs: dict, arms: dict) -> str:
    """Which adapted arms beat both scratch and transfer on linear top-1 with intervals excluding zero."""
    wins = []
    for arm, mode in arms.items():
        ok = all((diffs[f"{arm}-{o}"]["linear"].get("ci95") or [0, 0])[0] > 0 for o in ("transfer", "scratch"))
        if ok:
            wins.append(f"{mode} (+{diffs[f'{arm}-transfer']['linear']['mean'] * 100:.1f} vs transfer, "
                        f"+{diffs[f'{arm}-scratch']['linear']['mean'] * 100:.1f} vs scratch)")
    best = max(rows, key=lambda r: rows[r]["linear"].get("mean", -1))
    if wins:
        return f"{target}: adapting beats both scratch and frozen transfer (linear, 95% intervals) with " + \
            "; ".join(wins) + f". Highest linear mean: {rows[best]['mode']}."
    return (f"{target}: no adapted arm beats both scratch and frozen transfer with an interval excluding zero "
            f"(linear top-1); highest linear mean: {rows[best]['mode']}.")


# ------------------------------------------------------------------------------------------------------ output

def _pct(v) -> str:
    return "–" if v is None else f"{v * 100:.1f}"


def _cell(d: dict, signed: bool = False) -> str:
    if not d:
        return "–"
    m, ci = d["mean"], d.get("ci95")
    f = (lambda v: f"{v * 100:+.1f}") if signed else (lambda v: f"{v * 100:.1f}")
    return f(m) + (f" [{f(ci[0])}, {f(ci[1])}]" if ci else "")


def markdown(result: dict) -> str:
    lines = [f"Foundation: {result['foundation']['arch']} pretrained {result['foundation']['minutes']} min on "
             f"{', '.join(result['sets']['corpus']['sources'])} ({result['sets']['corpus']['train']:,} images); "
             f"{result['seeds']} seed(s), {result['minutes']} min per trained arm, device {result['device']}.", ""]
    for t in result["targets"]:
        lines += [f"### {t['target']}", "",
                  "| arm | kNN@20 top-1 % | linear top-1 % | Δ linear vs transfer | Δ linear vs scratch | "
                  "Δ kNN vs transfer | Δ kNN vs scratch | trainable params (+ projector) | steps | images seen | "
                  "train s |",
                  "|---|---|---|---|---|---|---|---|---|---|---|"]
        for arm, r in t["arms"].items():
            dt, ds = t["differences"].get(f"{arm}-transfer", {}), t["differences"].get(f"{arm}-scratch", {})
            c = r["compute"]
            tp = c.get("trainable_parameters")
            lines.append(f"| {r['mode']} | {_cell(r['knn'])} | {_cell(r['linear'])} | "
                         f"{_cell(dt.get('linear', {}), True)} | {_cell(ds.get('linear', {}), True)} | "
                         f"{_cell(dt.get('knn', {}), True)} | {_cell(ds.get('knn', {}), True)} | "
                         f"{'–' if tp is None else f'{tp:,}'} | {c['steps']} | {c['images_seen']:,} | "
                         f"{c['wall_seconds']:.0f} |")
        lines += ["", f"**{t['verdict']}**", ""]
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=Path("/tmp/adapt-bench"))
    ap.add_argument("--minutes", type=float, default=5.0, help="wall time of every trained arm")
    ap.add_argument("--foundation-minutes", type=float, default=20.0)
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--modes", default=MODES, help="--adapt modes, comma-separated")
    ap.add_argument("--variants", default="", help="extra arms, a mode with other TrainConfig values: "
                    "MODE@FIELD=VALUE[;FIELD=VALUE],… (e.g. full@backbone_lr_scale=0.3,lora@lr=1.5e-4); a rerun "
                    "into the same --out trains only the arms not yet done")
    ap.add_argument("--targets", default=",".join(TARGETS))
    ap.add_argument("--arch", default="vit_tiny_patch16_224", help="timm architecture of foundation and scratch")
    ap.add_argument("--patch", type=int, default=8)
    ap.add_argument("--size", type=int, default=32)
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--num-workers", type=int, default=0)
    ap.add_argument("--n-boot", type=int, default=1000)
    ap.add_argument("--max-train", type=int, default=None, help="at most this many training images per set")
    ap.add_argument("--max-steps", type=int, default=None, help="cap every run's steps (smoke runs)")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--smoke", action="store_true", help="2 steps per run, 64 images per set, 1 seed, 100 "
                                                         "resamples: proves the plumbing, measures nothing")
    ap.add_argument("--json", type=Path, default=None)
    ap.add_argument("--md", type=Path, default=None)
    a = ap.parse_args()
    if a.smoke:
        a.max_steps, a.max_train, a.seeds, a.n_boot, a.batch_size = 2, 64, 1, 100, 16
        a.minutes, a.foundation_minutes = min(a.minutes, 0.5), min(a.foundation_minutes, 0.5)
    from lejepa_domains import pretrain
    from lejepa_domains.utils import resolve_device

    modes = [m.strip() for m in a.modes.split(",") if m.strip()]
    variants = parse_variants(a.variants)
    if any(m.startswith(("lora", "explora")) for m in modes + [v[0] for v in variants]):
        import peft  # noqa: F401  imported now, so its seconds of import do not count against the first LoRA arm
    t0 = time.perf_counter()
    sets = build_sets(a.out / "data", a.size, a.max_train)
    recipes = {name: write_recipe(a.out, name, info, a) for name, info in sets.items()}
    foundation = a.out / "foundation"
    if not (foundation / "bench_done.json").is_file():
        tf = time.perf_counter()
        res = pretrain(str(recipes["corpus"]), out=foundation, device=a.device, progress=False, overwrite=True,
                       seed=0, time_budget=a.foundation_minutes * 60, max_steps=a.max_steps)
        if res.interrupted:  # a signal stopped it: an interrupted foundation is not a foundation
            raise SystemExit(f"{foundation}: interrupted; run the benchmark again")
        (foundation / "bench_done.json").write_text(json.dumps({"wall_seconds": round(time.perf_counter() - tf, 2)}))
    targets = [run_target(t, recipes[t], foundation, a.out, a, modes, variants) for t in a.targets.split(",")]
    result = {"format": "lejepa-domains/adapt-bench-v1", "command": " ".join(sys.argv), "smoke": a.smoke,
              "device": str(resolve_device(a.device)), "seeds": a.seeds, "minutes": a.minutes, "modes": modes,
              "variants": [{"mode": m, **o} for m, o in variants],
              "foundation": {"run": str(foundation), "arch": a.arch, "patch": a.patch, "size": a.size,
                             "minutes": a.foundation_minutes,
                             **json.loads((foundation / "bench_done.json").read_text())},
              "sets": sets, "targets": targets, "seconds": round(time.perf_counter() - t0, 1)}
    md = markdown(result)
    print(md)
    if a.json:
        a.json.write_text(json.dumps(result, indent=1, default=str))
    if a.md:
        a.md.write_text(md + "\n")


if __name__ == "__main__":
    main()
