"""Are the defaults ``recipes new`` chooses a strong start? For each small labelled set of
``benchmarks/scaffold_sets.py``: write the recipe with ``lejepa-domains recipes new --minutes M``, train it as
written (``lejepa-domains pretrain``, its printed estimate against the measured wall time), then train alternative
settings for the same wall time (``--time-budget`` = the scaffold run's measured time) and compare the frozen kNN@20
test accuracy of every run through the one evaluation path (``lejepa_domains.evaluate``, no leakage audit, 200
bootstrap resamples), with the random-init backbone of the scaffold's architecture as the floor.

    python benchmarks/scaffold_defaults.py --minutes 3 --out /tmp/scaffold-bench --json scaffold.json

Alternatives (each a one-place edit of the scaffolded recipe; at equal wall time):

- ``previous``: the scaffold rules before they were measured (resnet18, the images at their own side, global views
  at the image side up to 224 px, local 0.44 x global, batch = largest power of two <= n/4 up to 256, lr 5e-4,
  weight decay 5e-2, 1024 SIGReg directions, the 2048-2048-64 projector);
- ``resnet18``: the scaffold with resnet18 instead of resnet10t;
- ``full-side``: global views at the image side (images over 32 px), or the image upsampled to 16 px (images under
  16 px: the views then are 16 / 8 px);
- ``batch32``: batch 32 instead of 64 (twice the steps, each half the images; same learning rate).

With ``--seeds K`` every named run is repeated for seeds 0..K-1 (``pretrain --seed``; the alternative of seed s
gets the wall time of the scaffold run of seed s), and the table gives each setting's mean over the seeds with a
Student-t 95 % interval and the paired difference scaffold − alternative (paired by seed):

    python benchmarks/scaffold_defaults.py --minutes 2.5 --seeds 3 --contenders faces=resnet18 digits8=previous \
        scenes64=batch32 grey40=full-side --out /tmp/sb --json seeds.json

An alternative whose recipe equals the scaffold's (e.g. ``full-side`` where the rules already use the image side) is
skipped. Needs an idle machine: every figure is a wall time. Run from the repository root with the package installed.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")
sys.path.insert(0, os.path.dirname(__file__))

import scaffold_sets  # noqa: E402

CLI = str(Path(sys.executable).with_name("lejepa-domains"))


def _sub(text: str, key: str, value: str) -> str:
    """Replace ``key=...,`` (a Recipe or TrainConfig keyword) by ``key=value,`` once; fail loudly if absent."""
    pat = rf"\b{key}=\([^)]*\)" if key == "proj_hidden" else rf"\b{key}=[^,\n]+(?=,)"
    new, n = re.subn(pat, f"{key}={value}", text, count=1)
    if n != 1:
        raise SystemExit(f"scaffold_defaults: no {key}= in the scaffolded recipe")
    return new


def _get(text: str, key: str) -> str:
    return re.search(rf"\b{key}=([^,\n]+)(?=,)", text).group(1)


def alternatives(text: str, image_size: int, n_train: int) -> dict[str, str]:
    """name → recipe text, for the settings measured beside the scaffold's."""
    out: dict[str, str] = {}
    native = re.search(r"images are (\d+) px: stored and evaluated upsampled", text)
    if native:  # the previous rules kept the images at their own side
        image_size = int(native.group(1))
    g = min(image_size, 224)
    g = g - g % 8 if g >= 16 else g
    loc = max(8, int(round(g * 98 / 224 / 8)) * 8) if g >= 16 else max(2, g // 2)
    if loc >= g:
        loc = g // 2
    b = min(256, 2 ** int(math.log2(max(1, n_train // 4)))) if n_train >= 64 else int(_get(text, "batch_size"))
    t = _sub(text, "image_size", str(image_size)) if native else text
    for k, v in (("backbone", "'resnet18'"), ("global_size", str(g)), ("local_size", str(loc)),
                 ("proj_hidden", "(2048, 2048)"), ("batch_size", str(b)), ("lr", "5e-4"),
                 ("weight_decay", "5e-2"), ("num_slices", "1024")):
        t = _sub(t, k, v)
    out["previous"] = t
    out["resnet18"] = _sub(text, "backbone", "'resnet18'")
    if image_size > 32:
        g2 = image_size - image_size % 8
        out["full-side"] = _sub(_sub(text, "global_size", str(g2)), "local_size", str(g2 // 2))
    elif image_size < 16:
        out["full-side"] = _sub(_sub(_sub(text, "image_size", "16"), "global_size", "16"), "local_size", "8")
    if int(_get(text, "batch_size")) == 64:
        out["batch32"] = _sub(text, "batch_size", "32")
    return out


_DUR = re.compile(r"estimate: ((?:\d+ h ?)?(?:\d+ min ?)?(?:\d+ s)?) in all")


def _seconds(d: str) -> float:
    s = 0.0
    for n, u in re.findall(r"(\d+) (h|min|s)", d):
        s += int(n) * {"h": 3600, "min": 60, "s": 1}[u]
    return s


def pretrain(recipe: Path, run: Path, budget: float | None, log: Path, seed: int | None = None) -> dict:
    cmd = [CLI, "pretrain", str(recipe), "--out", str(run), "--device", "cpu", "--overwrite"]
    if seed is not None:
        cmd += ["--seed", str(seed)]
    if budget:
        cmd += ["--time-budget", f"{budget:.0f}s"]
    t0 = time.perf_counter()
    p = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "COLUMNS": "200"})
    wall = time.perf_counter() - t0
    log.write_text(p.stdout + p.stderr)
    if p.returncode != 0:
        raise SystemExit(f"scaffold_defaults: {' '.join(cmd)} failed ({p.returncode}); see {log}")
    m = _DUR.search(p.stdout + p.stderr)
    metrics = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines() if x.strip()]
    last = metrics[-1]
    st = re.search(r"at ([\d.]+) s/step", p.stdout + p.stderr)
    return {"wall_s": round(wall, 1), "estimate_s": _seconds(m.group(1)) if m else None,
            "step_s": float(st.group(1)) if st else None,
            "steps": last.get("step"), "epochs": last.get("epoch")}


def evaluate(recipe: Path, run: Path, random: bool) -> dict:
    from lejepa_domains import evaluate as ev

    rep = ev(str(recipe), checkpoint=run, baselines=("random",) if random else (), out=run / "eval", device="cpu",
             n_boot=200, plots=False, quiet=True, leakage=False, shots=(), cache_dir=run / "features")
    out = {}
    for name, m in rep["models"].items():
        ci = m["knn"].get("ci95", {}).get("top1")
        out[name] = {"knn": m["knn"]["top1"], "knn_ci95": ci, "linear": m["linear"]["top1"]}
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sets", nargs="*", default=list(scaffold_sets.SETS), choices=scaffold_sets.SETS)
    ap.add_argument("--minutes", type=float, default=3.0, help="recipes new --minutes")
    ap.add_argument("--only", nargs="*", default=None, help="alternatives to run (default: all)")
    ap.add_argument("--contenders", nargs="*", default=None, metavar="SET=ALT",
                    help="per set, the alternatives to run (overrides --only for that set)")
    ap.add_argument("--seeds", type=int, default=None, help="repeat every run for seeds 0..K-1 (pretrain --seed)")
    ap.add_argument("--out", type=Path, default=Path("/tmp/scaffold-bench"))
    ap.add_argument("--json", type=Path, default=None)
    a = ap.parse_args()
    contenders: dict[str, list[str]] = {}
    for item in a.contenders or ():
        k, _, v = item.partition("=")
        if k not in scaffold_sets.SETS or not v:
            raise SystemExit(f"scaffold_defaults: --contenders {item!r}: expected SET=ALT with SET one of "
                             f"{', '.join(scaffold_sets.SETS)}")
        contenders.setdefault(k, []).append(v)
    seeds = [None] if a.seeds is None else list(range(a.seeds))
    a.out.mkdir(parents=True, exist_ok=True)
    results = json.loads(a.json.read_text()) if a.json and a.json.is_file() else {}
    for name in a.sets:
        root = scaffold_sets.make(name, a.out / "sets")
        rdir = a.out / "recipes"
        rdir.mkdir(exist_ok=True)
        p = subprocess.run([CLI, "recipes", "new", name, "--data", str(root), "--out", str(rdir), "--minutes",
                            str(a.minutes), "--force"], capture_output=True, text=True)
        if p.returncode:
            raise SystemExit(p.stderr)
        recipe = rdir / f"{name}.py"
        text = recipe.read_text()
        image_size, n_train = int(_get(text, "image_size")), int(re.search(r"batch size for ([\d,]+)", text)
                                                                   .group(1).replace(",", ""))
        row = {"set": name, "n_train": n_train, "image_size": image_size, "minutes": a.minutes,
               "scaffold": {k: _get(text, k) for k in ("backbone", "global_size", "local_size", "batch_size", "lr",
                                                        "epochs")}}
        wanted = contenders.get(name, a.only)
        alts = {k: v for k, v in alternatives(text, image_size, n_train).items()
                if (wanted is None or k in wanted) and v != text}
        row["alternatives"] = {k: {kk: _get(v, kk) for kk in ("backbone", "image_size", "global_size", "local_size",
                                                              "batch_size", "lr")} for k, v in alts.items()}
        row["seeds"] = {}
        for seed in seeds:
            tag = "" if seed is None else f"-s{seed}"
            runs = {}
            run = a.out / "runs" / f"{name}-scaffold{tag}"
            runs["scaffold"] = pretrain(recipe, run, None, a.out / f"{name}-scaffold{tag}.log", seed)
            W = runs["scaffold"]["wall_s"]
            ev = evaluate(recipe, run, random="random" not in row)
            runs["scaffold"].update(ev["lejepa"])
            if "random" in ev:
                row["random"] = ev["random"]
            print(f"{name}{tag}: scaffold {runs['scaffold']}", flush=True)
            for alt, alt_text in alts.items():
                ap_ = rdir / f"{name}_{alt.replace('-', '_')}.py"
                ap_.write_text(alt_text.replace(f"name={name!r}", f"name={name + '_' + alt.replace('-', '_')!r}"))
                run = a.out / "runs" / f"{name}-{alt}{tag}"
                r = pretrain(ap_, run, W, a.out / f"{name}-{alt}{tag}.log", seed)
                r.update(evaluate(ap_, run, random=False)["lejepa"])
                runs[alt] = r
                print(f"{name}{tag}: {alt} {r}", flush=True)
            row["seeds"][str(seed)] = runs
            results[name] = row
            if a.json:
                a.json.write_text(json.dumps(results, indent=1))
            shutil.rmtree(a.out / "runs", ignore_errors=True)  # the runs are large; the figures are in the JSON
    print_table(results)


def _mean_ci(xs: list[float]) -> tuple[float, float, float]:
    """Mean and Student-t 95 % interval over the seeds (nan for one value)."""
    from lejepa_domains.evaluate.metrics import t_interval

    lo, hi = t_interval(xs) or (float("nan"), float("nan"))
    return sum(xs) / len(xs), lo, hi


def print_table(results: dict) -> None:
    from rich.console import Console
    from rich.table import Table

    t = Table(title="scaffold defaults vs alternatives at equal wall time (frozen kNN@20, test)")
    for c in ("set", "run", "seeds", "steps", "wall", "estimate (off)", "kNN@20", "linear", "scaffold − run, kNN@20"):
        t.add_column(c)
    for name, row in results.items():
        per_seed = row.get("seeds") or {"None": row["runs"]}  # rows written before --seeds have one "runs"
        names = list(next(iter(per_seed.values())))
        for alt in names:
            rs = [v[alt] for v in per_seed.values() if alt in v]
            knn = _mean_ci([100 * r["knn"] for r in rs])
            lin = _mean_ci([100 * r["linear"] for r in rs])
            off = [100 * (r["estimate_s"] - r["wall_s"]) / r["wall_s"] for r in rs if r.get("estimate_s")]
            est = f"{min(off):+.0f} … {max(off):+.0f} %" if alt == "scaffold" and off else ""
            diff = ""
            if alt != "scaffold":
                d = _mean_ci([100 * (v["scaffold"]["knn"] - v[alt]["knn"]) for v in per_seed.values() if alt in v])
                diff = f"{d[0]:+.1f} [{d[1]:+.1f}, {d[2]:+.1f}]"
            t.add_row(name, alt, str(len(rs)), "/".join(str(r["steps"]) for r in rs),
                      "/".join(f"{r['wall_s']:.0f}" for r in rs) + " s", est,
                      f"{knn[0]:.1f} [{knn[1]:.1f}, {min(100.0, knn[2]):.1f}]", f"{lin[0]:.1f}", diff)
        if "random" in row:
            t.add_row(name, "random init", "", "", "", "", f"{100 * row['random']['knn']:.1f}",
                      f"{100 * row['random']['linear']:.1f}", "")
    Console(width=max(160, Console().width)).print(t)


if __name__ == "__main__":
    main()
