"""Built-in recipes and their data cards, and the user's path for a new dataset:
``recipes new`` → ``recipes check`` → ``pretrain`` → ``eval`` on a fixture, offline."""

import json
import re
from pathlib import Path

import numpy as np
import pytest
import torch

from fixtures_data import (class_images, encode, galaxy10_h5, imagefolder, medmnist_npz, parquet_dataset,
                           save_to_disk_dataset, write_parquet)
from lejepa_domains import list_recipes, load_recipe
from lejepa_domains.cli import main
from lejepa_domains.data import sources
from lejepa_domains.data.cards import card_for, parse_card, validate_card
from lejepa_domains.data.views import MultiCropDataset

ROOT = Path(__file__).resolve().parents[1]
NEW = ["galaxy10", "food101", "eurosat", "pathmnist", "dermamnist", "bloodmnist", "pneumoniamnist"]


@pytest.fixture(autouse=True)
def _isolated(tmp_path, monkeypatch):
    monkeypatch.setenv("LEJEPA_DOMAINS_DATA_CACHE", str(tmp_path / "data-cache"))
    sources._MEMO.clear()
    torch.set_num_threads(1)  # tiny convolutions: one thread is faster than two contended ones
    yield
    sources._MEMO.clear()


def run_cli(capsys, *argv):
    code = 0
    try:
        main([str(a) for a in argv])
    except SystemExit as e:
        code = e.code
    cap = capsys.readouterr()
    return code, cap.out, cap.err


# ------------------------------------------------------------------------------------------------ cards

@pytest.mark.parametrize("name", sorted(i.name for i in list_recipes()))
def test_every_recipe_has_a_complete_card(name):
    card = card_for(load_recipe(name))
    assert card.complete, f"data card of {name} is incomplete: {card.errors}"
    if name in NEW:
        assert not card.warnings, f"{name}: {card.warnings}"


def test_all_new_recipes_are_registered():
    assert set(NEW) <= {i.name for i in list_recipes()}


def _mutated(tmp_path, text: str) -> list[str]:
    p = tmp_path / "galaxy10.md"
    p.write_text(text)
    return validate_card(parse_card(p), load_recipe("galaxy10")).errors


def test_card_validator_catches_incomplete_or_inconsistent_cards(tmp_path):
    good = (ROOT / "data_cards" / "galaxy10.md").read_text()
    assert _mutated(tmp_path, good) == []
    cases = {
        "missing 'licence'": re.sub(r"(?ms)^licence: >-\n(  .*?\n)+", "", good, count=1),
        "'citation' is still a TODO": re.sub(r"(?ms)^citation: >-\n(  .*?\n)+", "citation: TODO\n", good, count=1),
        "Why these views": good.replace("## Why these views", "## Views"),
        "lists 9 classes": good.replace("  - {id: 9, name: Edge-on with Bulge, total: 1873}\n", ""),
        "record its 'seed'": good.replace("  seed: 0\n---", "---"),
        "normalisation mean": good.replace("mean: [0.5, 0.5, 0.5]", "mean: [0.1, 0.5, 0.5]"),
        "'source' needs a 'revision'": re.sub(r"(?ms)^  revision: >-\n(    .*?\n)+", "", good, count=1),
        "'image_size' is 128": good.replace("image_size: 256", "image_size: 128"),
    }
    for expected, text in cases.items():
        assert text != good, expected
        errors = _mutated(tmp_path, text)
        assert any(expected in e for e in errors), f"{expected!r} not reported: {errors}"
    (tmp_path / "bad.md").write_text("no front matter\n")
    with pytest.raises(Exception, match="no YAML front matter"):
        parse_card(tmp_path / "bad.md")


def test_card_command_and_recipe_listing(capsys):
    code, out, err = run_cli(capsys, "card", "dermamnist")
    assert code == 0 and "CC BY-NC 4.0" in out and "Why these views" in out and "incomplete" not in out
    code, out, _ = run_cli(capsys, "recipes")
    assert code == 0
    for name in NEW:
        assert name[:8] in out
    code, _, err = run_cli(capsys, "card", "no_such_recipe")
    assert code == 2 and "no data card" in err
    code, out, _ = run_cli(capsys, "recipes", "show", "galaxy10")
    assert code == 0 and "matthieulel/galaxy10_decals" in out and "CentreKeepingCrop" in out


# ------------------------------------------------------------------------------------------------ built-ins on fixtures

def _fixture_for(name: str, recipe, tmp_path: Path) -> list:
    """Local copies in the layouts the recipe's card promises, small."""
    if name == "galaxy10":
        return [parquet_dataset(tmp_path / "g10", {"train": 100, "test": 20}, num_classes=10, size=32),
                galaxy10_h5(tmp_path / "Galaxy10_DECals.h5", n=100, size=32)]
    if name == "food101":
        root = tmp_path / "food"
        for split, n in (("train", 30), ("validation", 9)):
            x, y = class_images(n, 3, (24, 40), seed=len(split))  # non-square photos, classes 0..2 of 101
            enc = [encode(v, "JPEG") for v in x]
            enc[1] = encode(x[1][:, :, 0], "JPEG")  # one grey JPEG: converted on purpose (see the card)
            write_parquet(root / "data" / f"{split}-00000-of-00001.parquet", enc, y.tolist(),
                          class_names=recipe.class_names)
        return [root]
    if name == "eurosat":
        return [parquet_dataset(tmp_path / "eurosat", {"train": 20, "validation": 10, "test": 10}, num_classes=10,
                                size=64, class_names=recipe.class_names, fmt="JPEG")]
    flag = recipe.source.flag
    return [medmnist_npz(tmp_path / f"{flag}.npz", {"train": 4 * recipe.num_classes, "val": 2 * recipe.num_classes,
                                                    "test": 2 * recipe.num_classes},
                         num_classes=recipe.num_classes, channels=recipe.channels)]


@pytest.mark.parametrize("name", NEW)
def test_builtin_recipe_loads_a_local_copy_and_makes_views(name, tmp_path):
    r = load_recipe(name)
    for data in _fixture_for(name, r, tmp_path):
        sources._MEMO.clear()
        sets = {role: r.source.load(split, data=data) for role, split in r.splits.items()}
        for role, s in sets.items():
            assert s.images.shape[1:] == (r.image_size, r.image_size, r.channels), (role, s.images.shape)
            assert s.images.dtype == np.uint8 and len(s) > 0
            assert s.labels.min() >= 0 and s.labels.max() < r.num_classes
        assert len(set(sets["train"].meta.get("indices", [])) & set(sets["val"].meta.get("indices", []))) == 0
        ds = MultiCropDataset(sets["train"], r, seed=0)
        g, loc, y = ds[0]
        assert g.shape == (r.n_global, r.channels, r.global_size, r.global_size)
        assert loc.shape == (r.n_local, r.channels, r.local_size, r.local_size)
        assert torch.isfinite(g).all() and torch.isfinite(loc).all() and 0 <= y < r.num_classes


# ------------------------------------------------------------------------------------------------ facts once, one entry

def _once(source, **kw):
    from lejepa_domains import Recipe

    return Recipe(**{**dict(name="once", source=source, num_classes=3, class_names=["a", "b", "c"], image_size=12,
                            mean=(0.5,) * 3, std=(0.25,) * 3, global_size=12, local_size=6), **kw})


def test_the_source_takes_its_facts_from_the_recipe(tmp_path):
    from dataclasses import replace

    from lejepa_domains import UserError
    from lejepa_domains.data.table import LocalSource

    root = parquet_dataset(tmp_path / "pq", {"train": 9, "test": 6}, num_classes=3, class_names=["a", "b", "c"])
    src = LocalSource(root)
    r = _once(src)
    assert (r.source.image_size, r.source.channels, r.source.dtype, r.source.num_classes, r.source.class_names) == \
        (12, 3, "uint8", 3, ["a", "b", "c"])
    assert r.source.load("train").images.shape == (9, 12, 12, 3)
    with pytest.raises(UserError, match="LocalSource has no image_size: use it in a Recipe"):
        src.load("train")  # the recipe holds a bound copy; the source given to it is left alone
    # the same facts stated twice still work, with the same cache key
    twice = _once(LocalSource(root, image_size=12, channels=3, num_classes=3, class_names=("a", "b", "c")))
    assert twice.source.fingerprint("train") == r.source.fingerprint("train")
    # a disagreeing one is one clear error naming both values
    for kw, msg in ((dict(image_size=16), "image_size=16 but the recipe says image_size=12"),
                    (dict(channels=1), "channels=1 but the recipe says channels=3"),
                    (dict(dtype="uint16"), "dtype='uint16' but the recipe says dtype='uint8'"),
                    (dict(num_classes=2), "num_classes=2 but the recipe says num_classes=3"),
                    (dict(class_names=["x", "y", "z"]), "class_names=\\['x', 'y', 'z'\\] but the recipe says")):
        with pytest.raises(UserError, match=f"recipe 'once': its source says {msg}"):
            _once(LocalSource(root, **kw))
    # a copy of the recipe with another size gets a source of that size; the first recipe keeps its own
    small = replace(r, image_size=8, global_size=8, local_size=4)
    assert small.source.image_size == 8 and r.source.image_size == 12
    assert small.source.load("test").images.shape == (6, 8, 8, 3)
    # the in-memory sources take the size too; the built-ins keep their cache keys
    assert load_recipe("digits").source.size == 16 and load_recipe("specimens").source.patch == 32
    with pytest.raises(UserError, match="its source says image_size=16 but the recipe says image_size=12"):
        _once(sources.SklearnDigits(size=16))


def test_load_split_is_the_one_checked_entry(tmp_path):
    from lejepa_domains import DataError, Recipe
    from lejepa_domains.data import has_split, load_split

    r = load_recipe("digits")
    val = load_split(r, "val")
    assert val.images.shape[1:] == (16, 16, 1) and val.labels.max() < 10
    assert has_split(r, "val") and not has_split(r, "extra")
    with pytest.raises(DataError, match=r"recipe 'digits' has no 'extra' split"):
        load_split(r, "extra")
    peek = load_split(r, "train", sample=12)  # recipes check: a few images, facts about the whole split
    assert len(peek) == 12 and peek.meta["rows"] == 1258 and sum(peek.meta["label_counts"]) == 1258

    class OneClass(sources.Source):
        def describe(self):
            return {"kind": "test-one-class"}

        def _load(self, split, data):
            return sources.ImageSet(np.zeros((6, 8, 8, 1), np.uint8), None if split == "val" else np.zeros(6, np.int64))

    one = Recipe(name="one", source=OneClass(), num_classes=2, image_size=8, channels=1, mean=(0.5,), std=(0.25,),
                 global_size=8, local_size=4)
    assert len(load_split(one, "train")) == 6 and load_split(one, "val").labels is None
    with pytest.raises(DataError, match=r"recipe 'one': the train split has a single class; nothing to classify"):
        load_split(one, "train", require_classes=True)
    with pytest.raises(DataError, match=r"recipe 'one', val split 'val' has no labels"):
        load_split(one, "val", labelled=True)
    wrong = Recipe(name="wrong", source=OneClass(), num_classes=1, image_size=8, channels=3, mean=(0.5,) * 3,
                   std=(0.25,) * 3, global_size=8, local_size=4)
    with pytest.raises(DataError, match=r"recipe 'wrong', split 'train': expected 3 channel\(s\), found 1"):
        load_split(wrong, "train")


# ------------------------------------------------------------------------------------------------ adding a dataset

def test_round_trip_new_check_pretrain_eval(capsys, tmp_path):
    from lejepa_domains import evaluate, pretrain

    data = imagefolder(tmp_path / "tiny", {"train": 48, "test": 15}, class_names=("ant", "bee", "cat"), size=20)
    work = tmp_path / "work"
    code, _, err = run_cli(capsys, "recipes", "new", "tiny", "--data", data, "--out", work)
    assert code == 0, err
    py, md = work / "tiny.py", work / "tiny.md"
    text = py.read_text()
    assert "LocalSource(" in text and "['ant', 'bee', 'cat']" in text and "image_size=20" in text
    card = validate_card(parse_card(md), load_recipe(py))
    assert {"'licence' is still a TODO", "'citation' is still a TODO"} <= set(card.errors)
    assert card.front["splits"]["seed"] == 0 and card.front["classes"][2]["name"] == "cat"
    code, out, _ = run_cli(capsys, "card", py)  # the stub beside the recipe file is found and its gaps are named
    assert code == 0 and "incomplete card" in out and "Why these views" in out

    code, out, err = run_cli(capsys, "recipes", "check", py, "--out", work)
    assert code == 0, out + err
    assert "FAIL" not in out and "normalisation measured" in out
    from PIL import Image

    with Image.open(work / "tiny-views.png") as im:
        assert im.width > 300 and im.height > 300

    run = pretrain(str(py), out=tmp_path / "run", device="cpu", progress=False, epochs=1, max_steps=2,
                   batch_size=16, num_slices=32)
    assert (run.run_dir / "backbone.safetensors").is_file()
    report = evaluate(str(py), checkpoint=run.run_dir, baselines=["random"], out=tmp_path / "eval", plots=False,
                      device="cpu", n_boot=20, use_cache=False, quiet=True)
    assert (tmp_path / "eval" / "report.json").is_file()
    saved = json.loads((tmp_path / "eval" / "report.json").read_text())
    assert saved["recipe"]["name"] == "tiny" if isinstance(saved["recipe"], dict) else saved["recipe"] == "tiny"
    assert "random" in report["models"] and len(report["models"]) == 2


def test_new_infers_columns_splits_and_conversions(tmp_path):
    from lejepa_domains.recipe_tools import new_recipe

    # parquet with other column names, train + validation only (Food-101 style): test = validation, val carved
    root = tmp_path / "pq"
    for split, n in (("train", 30), ("validation", 9)):
        x, y = class_images(n, 3, (24, 36), seed=n)
        enc = [encode(v) for v in x]
        enc[0] = encode(x[0][:, :, 0])  # a grey image among RGB ones
        write_parquet(root / f"{split}-00000-of-00001.parquet", enc, y.tolist(), image_column="img",
                      label_column="target", class_names=["r", "g", "b"], extra={"image_id": list(range(n))})
    res = new_recipe("mixed", data=root, out=tmp_path / "out")
    inf = res.inferred
    assert (inf.image_column, inf.label_column) == ("img", "target")
    assert inf.splits == {"train": "train", "val": "val", "test": "validation"}
    assert inf.source_kwargs["carve"]["val"]["from"] == "train"
    assert inf.source_kwargs["convert"] == "RGB" and inf.source_kwargs["resize"] == "center-crop"
    assert inf.image_size == 24 and inf.channels == 3 and inf.class_names == ["r", "g", "b"]
    r = load_recipe(res.recipe_path)
    assert r.source.load(r.splits["test"]).images.shape == (9, 24, 24, 3)

    # Galaxy10 .h5: no splits → a stratified 80/10/10 cut with seed 0; save_to_disk → its splits
    res = new_recipe("gal", data=galaxy10_h5(tmp_path / "g.h5", n=100, size=16), out=tmp_path / "out")
    assert res.inferred.source_kwargs["unsplit"]["seed"] == 0
    assert res.inferred.role_sizes == {"train": 80, "val": 10, "test": 10}
    r = load_recipe(res.recipe_path)
    assert [len(r.source.load(s)) for s in ("train", "val", "test")] == [80, 10, 10]
    with pytest.raises(Exception, match="'test' split would be empty"):  # 3 images per class cannot be cut 80/10/10
        new_recipe("small", data=galaxy10_h5(tmp_path / "s.h5", n=30, size=16), out=tmp_path / "out")
    res = new_recipe("sd", data=save_to_disk_dataset(tmp_path / "sd", {"train": 9, "validation": 3, "test": 3}),
                     out=tmp_path / "out")
    assert res.inferred.splits == {"train": "train", "val": "validation", "test": "test"}
    assert "carve" not in res.inferred.source_kwargs
    grey = medmnist_npz(tmp_path / "pneumoniamnist.npz", num_classes=2, channels=1)
    res = new_recipe("xray", data=grey, out=tmp_path / "out")
    assert res.inferred.channels == 1 and res.inferred.image_size == 28 and len(res.inferred.mean) == 1


def test_new_and_check_refuse_clearly(capsys, tmp_path):
    data = imagefolder(tmp_path / "d", {"train": 20, "test": 4}, size=8)
    out = tmp_path / "o"
    assert run_cli(capsys, "recipes", "new", "ok", "--data", data, "--out", out)[0] == 0
    code, _, err = run_cli(capsys, "recipes", "new", "ok", "--data", data, "--out", out)
    assert code == 2 and "already exists" in err and "--force" in err
    code, _, err = run_cli(capsys, "recipes", "new", "Bad-Name", "--data", data, "--out", out)
    assert code == 2 and "lower-case" in err
    code, _, err = run_cli(capsys, "recipes", "new", "x", "--out", out)
    assert code == 2 and "exactly one of --hf" in err
    code, _, err = run_cli(capsys, "recipes", "new", "hubby", "--hf", "someone/a-dataset", "--out", out)
    assert code == 2 and "someone/a-dataset" in err and "not reachable" in err and "Traceback" not in err
    assert not (out / "hubby.py").exists()
    code, _, err = run_cli(capsys, "recipes", "new", "nothing", "--data", tmp_path / "missing", "--out", out)
    assert code == 2 and "no such file or folder" in err
    # a recipe that disagrees with its data: check reports it and exits 2
    py = out / "ok.py"
    text = py.read_text().replace("channels=3", "channels=1")
    py.write_text(re.sub(r"std=\([^)]*\)", "std=(0.5,)", re.sub(r"mean=\([^)]*\)", "mean=(0.5,)", text)))
    code, out_text, err = run_cli(capsys, "recipes", "check", py, "--out", tmp_path / "png")
    assert code == 2 and "FAIL" in out_text and "failed 3 check(s)" in " ".join(err.split())
    from lejepa_domains.recipe_tools import check_recipe

    rep = check_recipe(py, out=tmp_path / "png")
    failed = [d for _, ok, d in rep.checks if not ok]
    assert not rep.ok and len(failed) == 3 and all("RGB image (mode RGB); expected 1-channel" in d for d in failed)
    assert not (tmp_path / "png" / "ok-views.png").exists()
