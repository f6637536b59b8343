"""Evaluation protocols: metrics, kNN, linear probe, few-shot support sets, feature extraction and its cache."""

from __future__ import annotations

import json
import os

os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")
import lejepa_domains  # noqa: F401,E402

import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402
from sklearn.linear_model import LogisticRegression  # noqa: E402
from sklearn.metrics import accuracy_score, balanced_accuracy_score, f1_score, roc_auc_score  # noqa: E402
from sklearn.neighbors import KNeighborsClassifier  # noqa: E402

from lejepa_domains import load_recipe  # noqa: E402
from lejepa_domains.evaluate.protocols.fewshot import support_sets  # noqa: E402
from lejepa_domains.evaluate.features import extract_features  # noqa: E402
from lejepa_domains.evaluate.protocols.knn import knn_scores  # noqa: E402
from lejepa_domains.evaluate.protocols.linear import Standardizer, fit_logistic, linear_probe, predict_proba  # noqa: E402
from lejepa_domains.evaluate.metrics import (bootstrap_metrics, paired_difference, point_metrics,  # noqa: E402
                                             resample_counts, summarise)


@pytest.fixture(autouse=True)
def _offline(monkeypatch, tmp_path):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("LEJEPA_DOMAINS_CACHE", str(tmp_path / "feature-cache"))


def _sklearn_metrics(y, scores):
    pred = scores.argmax(1)
    return {"top1": accuracy_score(y, pred), "balanced_accuracy": balanced_accuracy_score(y, pred),
            "macro_f1": f1_score(y, pred, average="macro"),
            "auc": roc_auc_score(y, scores, multi_class="ovr", average="macro")}


def _scores(rng, n, c, ties=False):
    s = rng.random((n, c)) + np.eye(c)[rng.integers(0, c, n)] * 0.5
    if ties:
        s = np.round(s, 1) + 1e-3  # many tied scores
    return s / s.sum(1, keepdims=True)


# --------------------------------------------------------------------------------------------------------- metrics

@pytest.mark.parametrize("ties", [False, True])
def test_point_metrics_match_sklearn(ties):
    rng = np.random.default_rng(1)
    y = rng.integers(0, 5, 300)
    s = _scores(rng, 300, 5, ties)
    ours = point_metrics(y, s.argmax(1), s, 5)
    ref = _sklearn_metrics(y, s)
    for k in ref:
        assert ours[k] == pytest.approx(ref[k], abs=1e-9), k


def test_bootstrap_resamples_are_real_resamples():
    rng = np.random.default_rng(2)
    y = rng.integers(0, 4, 200)
    s = _scores(rng, 200, 4, ties=True)
    counts = next(resample_counts(len(y), 3, seed=7))
    assert counts.shape == (3, 200) and (counts.sum(1) == 200).all()
    boots = bootstrap_metrics(y, s.argmax(1), s, 4, n_boot=3, seed=7)
    for b in range(3):
        idx = np.repeat(np.arange(200), counts[b])
        ref = _sklearn_metrics(y[idx], s[idx])
        for k in ref:
            assert boots[k][b] == pytest.approx(ref[k], abs=1e-9), (k, b)


def test_paired_bootstrap_separates_real_differences_only():
    rng = np.random.default_rng(3)
    y = rng.integers(0, 3, 400)
    good = np.eye(3)[np.where(rng.random(400) < 0.9, y, (y + 1) % 3)] * 0.8 + 0.1
    bad = np.eye(3)[np.where(rng.random(400) < 0.6, y, (y + 1) % 3)] * 0.8 + 0.1
    pg, bg = summarise(y, good.argmax(1), good, 3, n_boot=500, seed=0)
    pb, bb = summarise(y, bad.argmax(1), bad, 3, n_boot=500, seed=0)
    d = paired_difference(pb, bb, pg, bg)["top1"]
    assert d["diff"] < -0.2 and d["ci95"][1] < 0 and d["p_value"] < 0.01
    same = paired_difference(pg, bg, pg, bg)["top1"]
    assert same["diff"] == 0 and same["ci95"] == [0.0, 0.0] and same["p_value"] == 1.0
    lo, hi = pg["ci95"]["top1"]
    assert lo < pg["top1"] < hi


# ------------------------------------------------------------------------------------------------------------- kNN

def _clustered(rng, n, d, c):
    y = rng.integers(0, c, n)
    centres = rng.normal(size=(c, d))
    return (centres[y] + 1.2 * rng.normal(size=(n, d))).astype(np.float32), y


@pytest.mark.parametrize("k", [10, 20, 100])
def test_knn_matches_sklearn(k):
    rng = np.random.default_rng(0)
    xtr, ytr = _clustered(rng, 400, 24, 6)
    xte, _ = _clustered(rng, 150, 24, 6)
    ours = knn_scores(xtr, ytr, xte, 6, ks=[k], temperature=0.07)[k]
    ref = KNeighborsClassifier(n_neighbors=k, metric="cosine", algorithm="brute",
                               weights=lambda dist: np.exp((1.0 - dist) / 0.07)).fit(xtr, ytr)
    p_ref = ref.predict_proba(xte)
    np.testing.assert_allclose(ours, p_ref, atol=2e-4)
    top2 = np.sort(p_ref, 1)[:, -2:]
    clear = (top2[:, 1] - top2[:, 0]) > 1e-3  # where the votes are not (nearly) tied
    assert clear.mean() > 0.9
    assert (ours.argmax(1)[clear] == ref.predict(xte)[clear]).all()


def test_knn_chunking_and_k_cap():
    rng = np.random.default_rng(1)
    xtr, ytr = _clustered(rng, 257, 16, 4)
    xte, _ = _clustered(rng, 61, 16, 4)
    full = knn_scores(xtr, ytr, xte, 4, ks=[10, 20, 500])
    chunked = knn_scores(xtr, ytr, xte, 4, ks=[10, 20, 500], query_chunk=7, train_chunk=13)
    for k in (10, 20, 500):
        np.testing.assert_allclose(full[k], chunked[k], rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(full[k].sum(1), 1.0, rtol=1e-5)
    # k larger than the training set = every training item votes
    sims = (xte / np.linalg.norm(xte, axis=1, keepdims=True)) @ (xtr / np.linalg.norm(xtr, axis=1, keepdims=True)).T
    w = np.exp(sims / 0.07)
    votes = np.stack([w[:, ytr == c].sum(1) for c in range(4)], 1)
    np.testing.assert_allclose(full[500], votes / votes.sum(1, keepdims=True), rtol=1e-3, atol=1e-5)


# ---------------------------------------------------------------------------------------------------- linear probe

@pytest.mark.parametrize("C", [0.01, 1.0])
def test_logistic_regression_matches_sklearn(C):
    rng = np.random.default_rng(4)
    x, y = _clustered(rng, 300, 20, 4)
    x = ((x - x.mean(0)) / x.std(0)).astype(np.float64)
    ref = LogisticRegression(C=C, max_iter=5000, tol=1e-10).fit(x, y)
    xt = torch.as_tensor(x, dtype=torch.float64)
    wb = fit_logistic(xt, torch.as_tensor(y), 4, C, max_iter=2000, tol=1e-9)
    np.testing.assert_allclose(predict_proba(xt, wb).numpy(), ref.predict_proba(x), atol=1e-4)


def test_linear_probe_picks_C_on_val_and_refits_on_train():
    rng = np.random.default_rng(5)
    x, y = _clustered(rng, 500, 30, 5)
    tr, va, te = np.arange(0, 300), np.arange(300, 400), np.arange(400, 500)
    res = linear_probe(x[tr], y[tr], x[va], y[va], x[te], 5, Cs=(1e-3, 1.0))
    best = max(res["val_top1"].values())
    assert res["C"] == min(c for c, a in res["val_top1"].items() if a == best)
    assert res["test_proba"].shape == (100, 5)
    # carved validation: the reported model is a refit on the full training data with the chosen C
    res2 = linear_probe(x[tr[:250]], y[tr[:250]], x[tr[250:]], y[tr[250:]], x[te], 5, Cs=(1e-3, 1.0),
                        refit_x=x[tr], refit_y=y[tr])
    xt = torch.as_tensor(x[tr])
    sc = Standardizer.fit(xt)
    wb = fit_logistic(sc(xt), torch.as_tensor(y[tr]), 5, res2["C"])
    np.testing.assert_allclose(res2["test_proba"], predict_proba(sc(torch.as_tensor(x[te])), wb).numpy(), atol=1e-5)


# -------------------------------------------------------------------------------------------------------- few-shot

def test_fewshot_support_sets_come_from_train_only():
    recipe = load_recipe("digits")
    train = recipe.source.load("train")
    test = recipe.source.load("test")
    sets = support_sets(train.labels, shots=(1, 5, 100), n_sets=5, seed=0)
    again = support_sets(train.labels, shots=(1, 5, 100), n_sets=5, seed=0)
    test_origin = set(test.meta["indices"])
    train_origin = np.asarray(train.meta["indices"])
    class_sizes = np.bincount(train.labels)
    for shot, lst in sets.items():
        assert len(lst) == 5
        for i, idx in enumerate(lst):
            np.testing.assert_array_equal(idx, again[shot][i])  # deterministic: shared by every backbone
            assert idx.min() >= 0 and idx.max() < len(train) and len(np.unique(idx)) == len(idx)
            assert not test_origin & set(train_origin[idx].tolist())  # never a test image
            np.testing.assert_array_equal(np.bincount(train.labels[idx], minlength=10),
                                          np.minimum(shot, class_sizes))
    assert not all(np.array_equal(sets[5][0], s) for s in sets[5][1:])  # the sets differ


# ------------------------------------------------------------------------------------------ features and the cache

def _run(root, recipe, seed):
    from lejepa_domains.method.model import build_model
    from lejepa_domains.runs import export_backbone

    torch.manual_seed(seed)
    model = build_model(recipe)
    root.mkdir(parents=True, exist_ok=True)
    export_backbone(model.backbone, root, recipe)
    (root / "config.json").write_text(json.dumps({"recipe": {"name": recipe.name, "path": recipe.path},
                                                  "train": {}, "data": None}))
    return root


@pytest.mark.parametrize("name", ["digits", "specimens"])
def test_preprocess_matches_eval_dataset(name):
    from lejepa_domains.data.views import EvalDataset
    from lejepa_domains.evaluate.encoders import random_encoder

    recipe = load_recipe(name)
    ds = recipe.source.load("val")
    enc = random_encoder(recipe)
    ours = enc.preprocess(torch.from_numpy(ds.images[:16]))
    ref = torch.stack([EvalDataset(ds, recipe)[i][0] for i in range(16)])
    torch.testing.assert_close(ours, ref, atol=1e-5, rtol=1e-5)


def test_cache_hit_and_invalidation_on_new_weights(tmp_path):
    from lejepa_domains.evaluate.encoders import lejepa_encoder

    recipe = load_recipe("digits")
    ds = recipe.source.load("val")
    run = _run(tmp_path / "run", recipe, seed=0)
    cache = tmp_path / "cache"
    kw = dict(cache_dir=cache, recipe_name=recipe.name, split="val",
              source_fingerprint=recipe.source.fingerprint("val"))
    f1, i1 = extract_features(lejepa_encoder(run, recipe)[0], ds.images, **kw)
    f2, i2 = extract_features(lejepa_encoder(run, recipe)[0], ds.images, **kw)
    assert not i1["cached"] and i2["cached"] and i1["key"] == i2["key"]
    np.testing.assert_array_equal(f1, f2)
    _run(run, recipe, seed=1)  # the checkpoint changes in place
    f3, i3 = extract_features(lejepa_encoder(run, recipe)[0], ds.images, **kw)
    assert not i3["cached"] and i3["key"] != i1["key"]
    assert not np.allclose(f3, f1)
    # another split or transform is another entry
    _, i4 = extract_features(lejepa_encoder(run, recipe)[0], ds.images, **{**kw, "split": "test"})
    assert not i4["cached"]


def test_extraction_streams_batches():
    from lejepa_domains.evaluate.encoders import random_encoder

    recipe = load_recipe("digits")
    ds = recipe.source.load("test")
    enc = random_encoder(recipe)
    seen = []
    enc.model.register_forward_pre_hook(lambda m, a: seen.append(a[0].shape[0]))
    feats, _ = extract_features(enc, ds.images, batch_size=100)
    assert seen == [100, 100, 100, len(ds) - 300]
    assert feats.shape == (len(ds), enc.model.num_features) and feats.dtype == np.float32


def test_diagnostics_tell_gaussian_from_collapsed():
    from lejepa_domains.evaluate.protocols.diagnostics import diagnostics

    rng = np.random.default_rng(0)
    gauss = diagnostics(rng.normal(size=(2048, 32)).astype(np.float32), num_slices=256)
    low_rank = rng.normal(size=(2048, 2)) @ rng.normal(size=(2, 32))
    skewed = rng.exponential(size=(2048, 32)) ** 2
    lr = diagnostics(low_rank.astype(np.float32), num_slices=256)
    sk = diagnostics(skewed.astype(np.float32), num_slices=256)
    assert gauss["rankme"] > 28 and lr["rankme"] < 2.5
    assert gauss["sigreg"] < 2 * gauss["sigreg_gaussian_floor"]
    assert lr["sigreg"] > 10 * gauss["sigreg"] and sk["sigreg"] > 10 * gauss["sigreg"]


@pytest.mark.parametrize("shape,k", [((37, 5000), 20), ((9, 4099), 200), ((5, 300), 10), ((4, 50), 60)])
def test_topk_rows_equals_torch_topk(shape, k):
    from lejepa_domains.evaluate.protocols.knn import topk_rows

    g = torch.Generator().manual_seed(0)
    sim = torch.randn(*shape, generator=g)
    sim[0] = torch.round(sim[0] * 2) / 2  # heavy ties in one row
    v, i = topk_rows(sim, k)
    ref = sim.topk(min(k, shape[1]), dim=1)
    torch.testing.assert_close(v, ref.values, rtol=0, atol=0)
    torch.testing.assert_close(sim.gather(1, i), v, rtol=0, atol=0)
    assert all(len(set(row.tolist())) == len(row) for row in i)  # no item twice


def test_t_interval_is_scipys_student_t_interval_of_the_mean():
    from scipy import stats

    from lejepa_domains.evaluate.metrics import t_interval

    vals = [0.81, 0.78, 0.84, 0.80]
    lo, hi = stats.t.interval(0.95, len(vals) - 1, loc=np.mean(vals), scale=stats.sem(vals))
    assert t_interval(vals) == pytest.approx([lo, hi], abs=1e-12)
    assert t_interval(np.array(vals)) == pytest.approx([lo, hi], abs=1e-12)
    assert t_interval([0.5]) is None and t_interval([]) is None
