"""Report sections for the evidence a reviewer asks for: the leakage audit, the filtered-test numbers, the snapshot
selection and its label-free correlations, published numbers (always labelled "published, other protocol") and
the data card's known overlaps with foundation-model training data. Markdown for ``report.md`` and a terminal
summary; every section is empty when its part of the report is absent."""

from __future__ import annotations

import math

from rich.table import Table

__all__ = ["evidence_markdown", "print_evidence", "leakage_rows", "correlation_lines", "published_lines"]


def _pct(v) -> str:
    return "–" if v is None or not isinstance(v, (int, float)) or not math.isfinite(v) else f"{100 * v:.1f}"


def _rho(c: dict) -> str:
    return "–" if c.get("rho") is None else f"{c['rho']:+.2f}"


def _rate(v) -> str:
    return "–" if v is None else f"{100 * v:.1f} %"


def _cell(e: dict | None, m: str = "top1") -> str:
    if not e or e.get(m) is None:
        return "–"
    ci = (e.get("ci95") or {}).get(m)
    return f"{_pct(e[m])} [{_pct(ci[0])}, {_pct(ci[1])}]" if ci else _pct(e[m])


def leakage_rows(lk: dict) -> list[list[str]]:
    """One row per audited split: n, exact, perceptual hash, features, any (with the share of the split)."""
    rows = []
    for role, e in lk["splits"].items():
        n = max(e["n"], 1)
        rows.append([role, str(e["n"]), f"{e['exact']} ({e.get('exact_low_information', 0)} near-constant)",
                     str(e["phash"]), "–" if "features" not in e else str(e["features"]),
                     f"{e['any']} ({100 * e['any'] / n:.1f} %)"])
    return rows


def correlation_lines(corr: dict[str, dict], target: str) -> list[str]:
    """Markdown table rows: signal | ρ [95 % interval] | p | n."""
    lines = [f"| label-free signal | Spearman ρ with {target} | p | n |", "|---|---:|---:|---:|"]
    for sig, c in corr.items():
        rho = "–" if c.get("rho") is None else f"{c['rho']:+.2f}"
        ci = "" if not c.get("ci95") else f" [{c['ci95'][0]:+.2f}, {c['ci95'][1]:+.2f}]"
        p = "–" if c.get("p_value") is None else f"{c['p_value']:.3f}"
        lines.append(f"| {sig} ({c.get('direction', '')}) | {rho}{ci} | {p} | {c.get('n', 0)} |")
    return lines


def published_lines(pub: dict) -> list[str]:
    lines = [f"## Published numbers ({pub['label']})", "",
             f"Quoted from their sources, **{pub['label']}**: other splits, training lengths and probes. They are "
             "not part of the table above, its intervals, ★ or paired differences.", "",
             "| value | metric | model | split | protocol | source | year | note |",
             "|---:|---|---|---|---|---|---|---|"]
    for r in pub["rows"]:
        lines.append(f"| {r['value']:.2f} | {r['metric']} | {r['model']} | {r['split']} | {r['protocol']} | "
                     f"{r['source']} | {r['year'] or 'n.d.'} | {r['note'] or ''} |")
    return lines + [""]


def evidence_markdown(r: dict) -> list[str]:
    lines: list[str] = []
    lk = r.get("leakage")
    if lk:
        cal = lk["calibration"]
        ph, ft = cal["phash"], cal.get("features")
        lines += ["## Leakage audit: evaluation splits against the pretraining pool", "",
                  f"Pool: the {lk['pool']['role']} split ({lk['pool']['n']} images). Features: "
                  f"`{lk.get('feature_model') or 'none'}`. Counts of evaluation images flagged by each criterion "
                  "(an image may be flagged by several); `blank` = exact duplicates that are (almost) constant "
                  "images.", "",
                  "| split | images | exact | perceptual hash | features | any |", "|---|---:|---:|---:|---:|---:|"]
        lines += ["| " + " | ".join(row) + " |" for row in leakage_rows(lk)]
        for role, why in (lk.get("skipped") or {}).items():
            lines.append(f"| {role} | – | – | – | – | not audited: {why} |")
        lines += ["", f"Thresholds calibrated on {cal['n_copies']} augmented copies of {cal['n_images']} pool "
                      f"images ({', '.join(cal['kinds'])}):", ""]
        lines += ["| criterion | threshold | copies caught | by kind | false positives (nearest other pool image) "
                  "| false positives (random pairs) |", "|---|---:|---:|---|---:|---:|"]
        for name, c in (("perceptual hash", ph), ("features", ft)):
            if not c:
                continue
            thr = (f"≤ {c['threshold']} {c['unit']}" if name != "features" else f"≥ {c['threshold']:.4f} cosine") \
                if not (name != "features" and c["threshold"] < 0) else "disabled (no threshold meets the FPR target)"
            kinds = ", ".join(f"{k} {_rate(v)}" for k, v in c["caught_by_kind"].items())
            lines.append(f"| {name} | {thr} | {_rate(c['caught'])} | {kinds} | {_rate(c['fpr_nearest'])} | "
                         f"{_rate(c['fpr_pairs'])} |")
        near = {role: e["low_information"] for role, e in lk["splits"].items() if e.get("low_information")}
        if near:
            lines += ["", "Near-constant images (no structure at the perceptual hash's 8×8 scale, e.g. flat sky or "
                      "background patches) are their own class of finding: " + ", ".join(
                          f"{role} {n}" for role, n in near.items()) + ". They resemble every other flat patch, so "
                      "neither the hash nor the features can tell a copy from a coincidence: only a pixel-identical "
                      "match counts (the exact column), and they are left out of the closest pairs shown."]
        lines += ["", f"Method: {lk['settings']['calibration']}. Closest pairs: `leakage.png`.", ""]
        f = lk.get("filtered")
        if f:
            lines += [f"### Test split with leaked images removed (criteria: `{f['criteria']}`)", "",
                      f"{f['removed']} of {r['splits']['test']} test images removed, {f['test']} kept."
                      + (f" {f['note']}." if f.get("note") else ""), "",
                      "| model | kNN top-1, full test | kNN top-1, filtered | linear top-1, full test | "
                      "linear top-1, filtered |", "|---|---:|---:|---:|---:|"]
            for name, full in f["full"].items():
                fm = f["models"].get(name, {})
                lines.append(f"| {name} | {_cell(full['knn'])} | {_cell(fm.get('knn'))} | {_cell(full['linear'])} | "
                             f"{_cell(fm.get('linear'))} |")
            lines += ["", "Same protocol, same train and val features; only the test images differ (95 % bootstrap "
                          "intervals over each test set).", ""]
    ko = r.get("known_overlaps")
    if ko is not None:
        lines += ["## Known overlaps with foundation-model training data (from the data card)", ""]
        if isinstance(ko, list):
            lines += [f"- **{o.get('model', '?')}**: {o.get('overlap', '')} (source: {o.get('source', '?')})"
                      for o in ko if isinstance(o, dict)]
        else:
            lines.append(f"- {ko}")
        lines.append("")
    sel = r.get("selection")
    if sel:
        lines += ["## Checkpoint selection among the run's snapshots", "",
                  f"Rule `{sel['rule']}` picked the snapshot of **epoch {sel['chosen_epoch']}**; the LeJEPA row above "
                  "is that snapshot. What each rule picks: "
                  + ", ".join(f"`{k}` → {v}" for k, v in sel["picks"].items()) + ".", "",
                  "| epoch | loss | SIGReg | RankMe | online probe (val) | frozen kNN@20 (val) |",
                  "|---:|---:|---:|---:|---:|---:|"]
        for s in sel["snapshots"]:
            def num(v, d=3):
                return "–" if v is None or not math.isfinite(v) else f"{v:.{d}f}"
            lines.append(f"| {s['epoch']} | {num(s.get('loss'))} | {num(s.get('sigreg'), 2)} | "
                         f"{num(s.get('rankme'), 1)} | {_pct(s.get('probe_val_acc'))} | {_pct(s.get('val_knn'))} |")
        lines += ["", *correlation_lines(sel["correlation"], "frozen kNN@20 (val)"), "",
                  *correlation_lines(sel["correlation_online_probe"], "online probe (val)"), "",
                  f"ρ > 0: the signal ranks the snapshots as the labels do. {sel['interval']}; few snapshots give "
                  "wide intervals. The test split is not used for any selection.", ""]
    pub = r.get("published")
    if pub and pub.get("rows"):
        lines += published_lines(pub)
    return lines


def print_evidence(report: dict, console) -> None:
    """Terminal summary: leakage counts, filtered-test figures, the selection, published rows (dim, labelled)."""
    lk = report.get("leakage")
    if lk:
        parts = [f"{role}: {e['exact']} exact, {e['phash']} hash, {e.get('features', '–')} feature, {e['any']} of "
                 f"{e['n']} flagged" + (f" ({e['low_information']} near-constant, judged by exact match only)"
                                        if e.get("low_information") else "") for role, e in lk["splits"].items()]
        console.print("leakage vs pretraining pool — " + "; ".join(parts) + " (report.md, leakage.png)",
                      highlight=False, soft_wrap=True)
        f = lk.get("filtered")
        if f and f.get("removed"):
            for name, full in f["full"].items():
                fm = f["models"].get(name, {})
                console.print(f"  {name}: kNN {_pct(full['knn']['top1'])} → {_pct(fm.get('knn', {}).get('top1'))}, "
                              f"linear {_pct(full['linear']['top1'])} → {_pct(fm.get('linear', {}).get('top1'))} "
                              f"with {f['removed']} leaked test image(s) removed", highlight=False)
    sel = report.get("selection")
    if sel:
        c = sel["correlation"]
        console.print(f"selection {sel['rule']}: epoch {sel['chosen_epoch']}; Spearman ρ with val kNN: "
                      + ", ".join(f"{k} {_rho(v)}" for k, v in c.items())
                      + f" (n = {len(sel['snapshots'])})", highlight=False)
    pub = report.get("published")
    if pub and pub.get("rows"):
        t = Table(title=f"{pub['label']} — not comparable, not in the statistics above", title_justify="left",
                  style="dim")
        for col in ("value", "model", "split", "protocol", "source"):
            t.add_column(col)
        for r in pub["rows"]:
            t.add_row(f"{r['value']:.2f}", r["model"], r["split"], r["protocol"],
                      f"{r['source']} ({r['year'] or 'n.d.'})")
        console.print(t)
