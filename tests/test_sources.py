"""Data sources: every local layout, split carving, the decode-once memory-mapped cache, and the bad-input table.

All fixtures are small, format-faithful files written into tmp_path (tests/fixtures_data.py); nothing touches the
network (conftest blocks sockets and sets HF_HUB_OFFLINE=1).
"""

import os

import numpy as np
import pytest
import torch

from fixtures_data import (class_images, encode, galaxy10_h5, imagefolder, medmnist_npz, parquet_dataset,
                           save_to_disk_dataset, write_parquet)
from lejepa_domains import load_recipe
from lejepa_domains.data import decode as decode_mod
from lejepa_domains.data import sources
from lejepa_domains.data.augment import CentreKeepingCrop
from lejepa_domains.data.resize import resize_image
from lejepa_domains.data.hub import HFSource, LocalSource, MedMNISTSource
from lejepa_domains.errors import DataError, OfflineError, UserError


@pytest.fixture(autouse=True)
def _isolated(tmp_path, monkeypatch):
    monkeypatch.setenv("LEJEPA_DOMAINS_DATA_CACHE", str(tmp_path / "data-cache"))
    sources._MEMO.clear()
    torch.set_num_threads(1)
    yield
    sources._MEMO.clear()


@pytest.fixture
def count_decodes(monkeypatch):
    calls = []
    real = decode_mod.decode_image

    def counting(raw, where, **kw):
        calls.append(where)
        return real(raw, where, **kw)

    monkeypatch.setattr(decode_mod, "decode_image", counting)
    return calls


# ------------------------------------------------------------------------------------------------ layouts

def test_parquet_shards_round_trip_pixels_and_class_names(tmp_path):
    root = parquet_dataset(tmp_path / "pq", {"train": 12, "test": 6}, num_classes=3, class_names=["a", "b", "c"],
                           shards=2)
    src = LocalSource(root, image_size=16, num_classes=3)
    tr = src.load("train")
    x, y = class_images(12, 3, 16, 3, seed=0)
    assert tr.images.shape == (12, 16, 16, 3) and tr.images.dtype == np.uint8
    assert np.array_equal(np.asarray(tr.images), x)  # PNG is lossless and no resize happened: exact pixels
    assert tr.labels.dtype == np.int64 and np.array_equal(tr.labels, y)
    assert tr.class_names == ["a", "b", "c"]
    assert len(src.load("test")) == 6


def test_parquet_in_split_folders_hub_convert_layout(tmp_path):
    x, y = class_images(5, 2, 16, seed=3)
    for split in ("train", "test"):
        write_parquet(tmp_path / "pq" / "default" / split / "0000.parquet", [encode(a) for a in x], y.tolist())
    src = LocalSource(tmp_path / "pq", image_size=8, num_classes=2)
    s = src.load("test")
    assert s.images.shape == (5, 8, 8, 3) and np.array_equal(s.labels, y)


def test_save_to_disk_dict_and_single_dataset(tmp_path):
    root = save_to_disk_dataset(tmp_path / "sd", {"train": 9, "test": 6}, num_classes=3)
    src = LocalSource(root, image_size=16, num_classes=3)
    x, y = class_images(6, 3, 16, seed=11)
    te = src.load("test")
    assert np.array_equal(np.asarray(te.images), x) and np.array_equal(te.labels, y)
    assert te.class_names == ["c0", "c1", "c2"]

    single = save_to_disk_dataset(tmp_path / "one", {"train": 30}, num_classes=3, single=True)
    with pytest.raises(DataError, match="has no splits"):
        LocalSource(single, image_size=16, num_classes=3).load("train")
    cut = LocalSource(single, image_size=16, num_classes=3,
                      unsplit={"fractions": {"train": 0.6, "val": 0.2, "test": 0.2}, "seed": 0})
    parts = {s: cut.load(s) for s in ("train", "val", "test")}
    idx = [set(p.meta["indices"]) for p in parts.values()]
    assert not (idx[0] & idx[1] or idx[0] & idx[2] or idx[1] & idx[2])
    assert set().union(*idx) == set(range(30))
    assert [len(p) for p in parts.values()] == [18, 6, 6]


def test_imagefolder_split_and_unsplit(tmp_path):
    root = imagefolder(tmp_path / "if", {"train": 6, "test": 4}, class_names=("zebra", "ant"))
    src = LocalSource(root, image_size=16, num_classes=2)
    tr = src.load("train")
    assert tr.class_names == ["ant", "zebra"]  # sorted folder names
    x, y = class_images(6, 2, 16, seed=0)  # written as class_names[y] = ("zebra", "ant")[y]
    files_order = np.argsort([("zebra", "ant")[c] for c in y], kind="stable")  # files are read class folder by folder
    assert np.array_equal(np.asarray(tr.images), x[files_order])
    assert np.array_equal(tr.labels, np.array([1 - y[i] for i in files_order]))

    flat = tmp_path / "flat"
    for c in ("a", "b"):
        (flat / c).mkdir(parents=True)
        for i in range(5):
            (flat / c / f"{i}.png").write_bytes(encode(class_images(1, 1, 8, seed=i)[0][0]))
    cut = LocalSource(flat, image_size=8, num_classes=2,
                      unsplit={"fractions": {"train": 0.6, "val": 0.2, "test": 0.2}, "seed": 0})
    assert [len(cut.load(s)) for s in ("train", "val", "test")] == [6, 2, 2]


@pytest.mark.parametrize("compressed", [True, False])
def test_medmnist_npz_file_and_folder(tmp_path, compressed):
    f = medmnist_npz(tmp_path / "med" / "pathmnist.npz", num_classes=9, compressed=compressed)
    src = MedMNISTSource("pathmnist", num_classes=9)
    with np.load(f) as z:
        want_x, want_y = z["val_images"], z["val_labels"][:, 0]
    for data in (f, f.parent):  # the file itself, or a folder holding {flag}.npz
        sources._MEMO.clear()
        s = src.load("val", data=data)
        assert np.array_equal(np.asarray(s.images), want_x) and np.array_equal(s.labels, want_y)
        assert s.labels.dtype == np.int64 and s.labels.ndim == 1
    grey = medmnist_npz(tmp_path / "pn.npz", num_classes=2, channels=1)
    g = MedMNISTSource("pneumoniamnist", channels=1, num_classes=2).load("test", data=grey)
    assert g.images.shape == (12, 28, 28, 1)


def test_galaxy10_h5_gets_a_fixed_recorded_stratified_split(tmp_path):
    h5 = galaxy10_h5(tmp_path / "Galaxy10_DECals.h5", n=100, size=32)
    src = load_recipe("galaxy10").source
    parts = {s: src.load(s, data=h5) for s in ("train", "val", "test")}
    assert [len(p) for p in parts.values()] == [80, 10, 10]  # per class of 10: round(8.1), round(9.0) − 8, rest
    idx = {s: set(p.meta["indices"]) for s, p in parts.items()}
    assert not (idx["train"] & idx["val"] or idx["train"] & idx["test"] or idx["val"] & idx["test"])
    assert set().union(*idx.values()) == set(range(100))
    assert all(p.meta["split_method"]["seed"] == 0 for p in parts.values())
    assert parts["train"].images.shape[1:] == (256, 256, 3)
    assert (np.bincount(parts["test"].labels, minlength=10) == 1).all()  # stratified: one of each of 10 per class
    sources._MEMO.clear()
    again = src.load("test", data=h5)
    assert again.meta["indices"] == parts["test"].meta["indices"]  # fixed seed → the same split every time


def test_val_is_carved_from_train_only_when_the_data_has_none(tmp_path):
    root = parquet_dataset(tmp_path / "pq", {"train": 40, "test": 8}, num_classes=4)
    src = LocalSource(root, image_size=16, num_classes=4, carve={"val": {"from": "train", "fraction": 0.2,
                                                                        "seed": 3}})
    tr, va, te = (src.load(s) for s in ("train", "val", "test"))
    assert (len(tr), len(va), len(te)) == (32, 8, 8)
    assert not set(tr.meta["indices"]) & set(va.meta["indices"])
    assert sorted(tr.meta["indices"] + va.meta["indices"]) == list(range(40))
    assert (np.bincount(va.labels) == 2).all() and "seed 3" in va.meta["split_method"]["method"]
    # a copy that has its own 'val' split is used as is (nothing carved, train untouched)
    with_val = parquet_dataset(tmp_path / "pq2", {"train": 12, "val": 4, "test": 4}, num_classes=4)
    sources._MEMO.clear()
    assert len(src.load("train", data=with_val)) == 12 and len(src.load("val", data=with_val)) == 4


def test_split_aliases_and_missing_split(tmp_path):
    root = parquet_dataset(tmp_path / "pq", {"train": 6, "validation": 3}, num_classes=3)
    src = LocalSource(root, image_size=16, num_classes=3)
    assert len(src.load("val")) == 3  # 'val' → the data's 'validation'
    with pytest.raises(DataError, match=r"no split 'test'.*\['train', 'validation'\]"):
        src.load("test")


# ------------------------------------------------------------------------------------------------ cache

def test_decoding_happens_once_then_memory_mapped(tmp_path, count_decodes):
    root = parquet_dataset(tmp_path / "pq", {"train": 10, "test": 4}, num_classes=2)
    first = LocalSource(root, image_size=12, num_classes=2).load("train")
    assert len(count_decodes) == 10 and first.meta["cache_hit"] is False
    sources._MEMO.clear()  # a new process: only the on-disk cache is left
    second = LocalSource(root, image_size=12, num_classes=2).load("train")
    assert len(count_decodes) == 10, "the second load decoded images again"
    assert isinstance(second.images, np.memmap) and second.meta["cache_hit"] is True
    assert np.array_equal(np.asarray(first.images), np.asarray(second.images))
    cache_files = os.listdir(tmp_path / "data-cache")
    assert sum(f.endswith(".images.npy") for f in cache_files) == 1 and not any(".tmp-" in f for f in cache_files)
    second.images[0, 0, 0, 0] = 7  # copy-on-write map: writable in memory, the cache file is untouched
    sources._MEMO.clear()
    assert LocalSource(root, image_size=12, num_classes=2).load("train").images[0, 0, 0, 0] == first.images[0, 0, 0, 0]


def test_changed_source_or_size_invalidates_the_cache(tmp_path, count_decodes):
    root = parquet_dataset(tmp_path / "pq", {"train": 6, "test": 2}, num_classes=2)
    a = LocalSource(root, image_size=16, num_classes=2).load("train")
    assert len(count_decodes) == 6
    sources._MEMO.clear()
    LocalSource(root, image_size=8, num_classes=2).load("train")  # another size: another entry
    assert len(count_decodes) == 12
    x, y = class_images(6, 2, 16, seed=99)  # rewrite the data with other pixels
    shard = root / "data" / "train-00000-of-00001.parquet"
    write_parquet(shard, [encode(255 - v) for v in x], y.tolist())
    st = shard.stat()
    os.utime(shard, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    sources._MEMO.clear()
    b = LocalSource(root, image_size=16, num_classes=2).load("train")
    assert len(count_decodes) == 18
    assert np.array_equal(np.asarray(b.images), 255 - x) and not np.array_equal(np.asarray(a.images), 255 - x)


def test_a_crash_while_decoding_leaves_no_entry_behind(tmp_path, monkeypatch):
    root = parquet_dataset(tmp_path / "pq", {"train": 8, "test": 2}, num_classes=2)
    real = decode_mod.decode_image
    n = []

    def flaky(raw, where, **kw):
        n.append(1)
        if len(n) == 5:
            raise KeyboardInterrupt  # the user presses ^C half-way
        return real(raw, where, **kw)

    monkeypatch.setattr(decode_mod, "decode_image", flaky)
    with pytest.raises(KeyboardInterrupt):
        LocalSource(root, image_size=16, num_classes=2).load("train")
    cache = tmp_path / "data-cache"
    assert not list(cache.glob("*.json")) and not list(cache.glob(".*tmp*")) and not list(cache.glob("*.npy"))
    monkeypatch.setattr(decode_mod, "decode_image", real)
    ok = LocalSource(root, image_size=16, num_classes=2).load("train")
    assert len(ok) == 8 and len(list(cache.glob("*.json"))) == 1


# ------------------------------------------------------------------------------------------------ bad input

def _png16(tmp_path, rgb: bool) -> bytes:
    import cv2

    a = (np.arange(64 * (3 if rgb else 1)).reshape(8, 8, -1) * 997 % 65535).astype(np.uint16)
    p = str(tmp_path / "x16.png")
    cv2.imwrite(p, a if rgb else a[:, :, 0])
    return open(p, "rb").read()


def _rgba() -> bytes:
    return encode(np.full((8, 8, 4), 100, np.uint8))


def _grey() -> bytes:
    return encode(np.full((8, 8), 100, np.uint8))


def _one_bad(tmp_path, bad: bytes, row: int = 1) -> LocalSource:
    good = encode(np.full((8, 8, 3), 50, np.uint8))
    imgs = [good] * 4
    imgs[row] = bad
    write_parquet(tmp_path / "pq" / "train.parquet", imgs, [0, 1, 0, 1])
    return LocalSource(tmp_path / "pq", image_size=8, num_classes=2)


BAD = {
    "corrupt bytes": (lambda t: _one_bad(t, b"certainly not a PNG"), ["row 1 of file", "train.parquet", "corrupt"]),
    "truncated png": (lambda t: _one_bad(t, encode(np.full((32, 32, 3), 9, np.uint8))[:60], row=2),
                      ["row 2 of file", "corrupt"]),
    "grayscale for RGB": (lambda t: _one_bad(t, _grey()), ["row 1", "grayscale", "expected RGB", "convert='RGB'"]),
    "RGBA for RGB": (lambda t: _one_bad(t, _rgba()), ["row 1", "RGBA", "expected RGB"]),
    "16-bit grey": (lambda t: _one_bad(t, _png16(t, rgb=False)), ["row 1", "16-bit", "8-bit"]),
    "16-bit RGB": (lambda t: _one_bad(t, _png16(t, rgb=True), row=3), ["row 3", "16-bit"]),
}


@pytest.mark.parametrize("case", list(BAD))
def test_bad_images_name_the_row_and_the_expectation(tmp_path, case):
    make, expected = BAD[case]
    src = make(tmp_path)
    with pytest.raises(DataError) as e:
        src.load("train")
    msg = str(e.value)
    assert "\n" not in msg
    for s in expected:
        assert s in msg, f"{s!r} not in {msg!r}"


def test_bad_columns_labels_and_splits(tmp_path):
    img = [encode(np.full((8, 8, 3), 1, np.uint8))] * 3
    write_parquet(tmp_path / "a" / "train.parquet", img, [0, 1, 0], image_column="img")
    with pytest.raises(DataError, match=r"train.parquet: missing image column 'image'; columns are \['img', 'label'\]"):
        LocalSource(tmp_path / "a", image_size=8, num_classes=2).load("train")
    write_parquet(tmp_path / "b" / "train.parquet", img, [0, 1, 0], label_column="target")
    with pytest.raises(DataError, match="missing label column 'label'"):
        LocalSource(tmp_path / "b", image_size=8, num_classes=2).load("train")
    write_parquet(tmp_path / "c" / "train.parquet", img, [0, 1, 7])
    with pytest.raises(DataError, match=r"row 2 of file .*train.parquet: label 7 is outside \[0, 2\)"):
        LocalSource(tmp_path / "c", image_size=8, num_classes=2).load("train")
    write_parquet(tmp_path / "d" / "train.parquet", img, [0, -1, 1])
    with pytest.raises(DataError, match="label -1 is outside"):
        LocalSource(tmp_path / "d", image_size=8, num_classes=2).load("train")
    write_parquet(tmp_path / "e" / "train.parquet", img, [0, 1, 0])
    write_parquet(tmp_path / "e" / "test.parquet", [], [])
    with pytest.raises(DataError, match="split 'test' is empty"):
        LocalSource(tmp_path / "e", image_size=8, num_classes=2).load("test")
    write_parquet(tmp_path / "f" / "train.parquet", img, [0, 1, 0], class_names=["x", "y"])
    with pytest.raises(DataError, match="ClassLabel names differ .* id 0"):
        LocalSource(tmp_path / "f", image_size=8, num_classes=2, class_names=["cat", "dog"]).load("train")
    with pytest.raises(DataError, match="no such file or folder"):
        LocalSource(tmp_path / "nowhere", image_size=8).load("train")


def test_bad_npz_h5_and_imagefolder(tmp_path):
    with pytest.raises(DataError, match="16-bit pixels of dtype uint16"):
        MedMNISTSource("pathmnist", num_classes=9).load("train", data=medmnist_npz(tmp_path / "a.npz",
                                                                                  dtype=np.uint16))
    x, _ = class_images(6, 2, 28)
    np.savez(tmp_path / "b.npz", train_images=x, train_labels=np.zeros((6, 3), np.uint8))
    with pytest.raises(DataError, match=r"labels have shape \(6, 3\) \(multi-label\?\)"):
        MedMNISTSource("chestmnist", num_classes=14).load("train", data=tmp_path / "b.npz")
    import h5py

    with h5py.File(tmp_path / "g.h5", "w") as f:
        f["images"] = x
    with pytest.raises(DataError, match="missing label dataset 'ans'"):
        load_recipe("galaxy10").source.load("train", data=tmp_path / "g.h5")
    root = imagefolder(tmp_path / "if", {"train": 4, "test": 2}, size=8)
    broken = root / "train" / "beta" / "broken.png"
    broken.write_bytes(b"\x89PNG\r\n\x1a\n not really")
    with pytest.raises(DataError, match=f"file {broken}: corrupt"):
        LocalSource(root, image_size=8, num_classes=2).load("train")


def test_deliberate_conversions_only_when_asked(tmp_path):
    write_parquet(tmp_path / "g" / "train.parquet", [_grey(), _grey()], [0, 1])
    s = LocalSource(tmp_path / "g", image_size=8, num_classes=2, convert="RGB").load("train")
    assert s.images.shape == (2, 8, 8, 3) and (np.asarray(s.images) == 100).all()
    write_parquet(tmp_path / "c" / "train.parquet", [encode(np.full((8, 8, 3), 60, np.uint8))] * 2, [0, 1])
    with pytest.raises(DataError, match="RGB image .*expected 1-channel"):
        LocalSource(tmp_path / "c", image_size=8, channels=1, num_classes=2).load("train")
    s1 = LocalSource(tmp_path / "c", image_size=8, channels=1, num_classes=2, convert="L").load("train")
    assert s1.images.shape == (2, 8, 8, 1) and (np.asarray(s1.images) == 60).all()


def test_offline_hub_is_one_clear_line_pointing_at_data():
    with pytest.raises(OfflineError) as e:
        HFSource("someone/some-dataset", image_size=16, num_classes=2).load("train")
    msg = str(e.value)
    assert "someone/some-dataset" in msg and "--data" in msg and "save_to_disk" in msg and "\n" not in msg
    with pytest.raises(OfflineError, match="--data FILE"):
        MedMNISTSource("pathmnist", num_classes=9).load("train")
    with pytest.raises(DataError, match="28 px only"):
        MedMNISTSource("pathmnist", size=224, num_classes=9).load("train")


def test_cli_pretrain_offline_recipe_is_one_line_exit_2(capsys, tmp_path):
    from lejepa_domains.cli import main

    with pytest.raises(SystemExit) as e:
        main(["pretrain", "eurosat", "--out", str(tmp_path / "run")])
    err = capsys.readouterr().err
    assert e.value.code == 2 and "timm/eurosat-rgb" in err and "--data" in err and "Traceback" not in err
    assert not (tmp_path / "run").exists()


def test_bad_source_arguments():
    with pytest.raises(UserError, match="convert must be"):
        LocalSource("x", image_size=8, convert="CMYK")
    with pytest.raises(UserError, match="carve"):
        LocalSource("x", image_size=8, carve={"val": {"from": "train", "fraction": 1.5}})
    with pytest.raises(UserError, match="sum to 1"):
        LocalSource("x", image_size=8, unsplit={"fractions": {"train": 0.5}})


# ------------------------------------------------------------------------------------------------ transforms

def test_centre_keeping_crop_always_keeps_the_centre():
    import albumentations as A

    x = np.zeros((64, 64, 3), np.uint8)
    x[30:34, 30:34] = 255
    tf = A.Compose([CentreKeepingCrop(scale=(0.1, 0.5), margin=0.25)])
    for seed in range(40):
        tf.set_random_seed(seed)
        y = tf(image=x)["image"]
        assert y.shape == x.shape
        ys, xs = np.nonzero(y[:, :, 0] > 128)
        assert len(ys), f"seed {seed}: the centre left the crop"
        # the margin keeps the centre inside the middle half of the view
        assert 8 <= ys.mean() <= 56 and 8 <= xs.mean() <= 56


def test_center_crop_resize_keeps_aspect():
    img = np.zeros((30, 60, 3), np.uint8)
    img[:, 15:45] = 200  # the central square
    out = resize_image(img, 16, "center-crop")
    assert out.shape == (16, 16, 3) and (out == 200).all()
    assert resize_image(img, 16, "stretch").shape == (16, 16, 3)
