"""Issue 28: ``embed`` (chunked Parquet, manifest, sidecar; resume; gloo ranks), ``search`` and ``outliers``, driven
through the console script where the user would, on tiny fixtures (tinydigits, a random-init run folder)."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")
import lejepa_domains  # noqa: E402,F401

import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

from fixtures_data import class_images, encode, write_parquet  # noqa: E402

HERE = Path(__file__).resolve().parent
TINY = str(HERE / "recipes" / "tinydigits.py")
CLI = str(Path(sys.executable).with_name("lejepa-domains"))


def cli(*args, env=None, timeout=240) -> subprocess.CompletedProcess:
    assert CLI, "the lejepa-domains console script is not installed"
    return subprocess.run([CLI, *map(str, args)], capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, "COLUMNS": "200", **(env or {})})


def error_lines(p: subprocess.CompletedProcess) -> list[str]:
    return [ln for ln in p.stderr.splitlines() if ln.strip()]


def run_main(capsys, *args) -> subprocess.CompletedProcess:
    """The console script's entry point in this process (the same ``lejepa_domains.cli:main``; saves the start-up
    of a new interpreter on a loaded machine): its exit code and output."""
    from lejepa_domains.cli import main

    capsys.readouterr()
    code = 0
    try:
        main([str(a) for a in args])
    except SystemExit as e:
        code = e.code or 0
    out = capsys.readouterr()
    return subprocess.CompletedProcess(list(args), code, out.out, out.err)


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory) -> Path:
    """A run folder as pretrain exports it (backbone.safetensors + backbone.json), a seeded random resnet10t."""
    import timm

    from lejepa_domains import load_recipe
    from lejepa_domains.runs import export_backbone

    rec = load_recipe(TINY)
    torch.manual_seed(3)
    model = timm.create_model(rec.backbone, pretrained=False, num_classes=0, in_chans=rec.channels,
                              **dict(rec.backbone_kwargs))
    out = tmp_path_factory.mktemp("run") / "tinyrun"
    export_backbone(model, out, rec)
    return out


@pytest.fixture(scope="module")
def emb_dir(tmp_path_factory, run_dir) -> Path:
    """The run's embedding of every tinydigits split (float32), written in-process."""
    from lejepa_domains import embed

    out = tmp_path_factory.mktemp("emb") / "all"
    embed(TINY, str(run_dir), out, dtype="float32", chunk_size=100, device="cpu", quiet=True)
    return out


@pytest.fixture(autouse=True)
def _caches(monkeypatch, tmp_path):
    monkeypatch.setenv("LEJEPA_DOMAINS_CACHE", str(tmp_path / "feature-cache"))
    monkeypatch.setenv("LEJEPA_DOMAINS_DATA_CACHE", str(tmp_path / "data-cache"))


def _read_parts(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted((folder / "parts").iterdir())}


# ------------------------------------------------------------------------------------------- 1. embed = eval features

def test_embed_vectors_equal_the_evaluations_features(tmp_path, run_dir, emb_dir, capsys):
    from lejepa_domains import load_embeddings, load_recipe
    from lejepa_domains.data import load_split
    from lejepa_domains.evaluate.encoders import EncoderContext, EncoderOptions, build_encoder
    from lejepa_domains.evaluate.features import extract_features

    rec = load_recipe(TINY)
    enc = build_encoder("lejepa", EncoderContext(rec, EncoderOptions(), run_dir=run_dir))
    emb = load_embeddings(emb_dir)
    side = json.loads((emb_dir / "embeddings.json").read_text())
    assert side["counts"] == {"embedded": 512, "train": 320, "val": 96, "test": 96, "skipped": 0}
    assert side["dim"] == 512 and side["dtype"] == "float32" and len(side["backbone"]["sha256"]) == 64
    assert side["preprocessing"] == enc.transform_description() and side["package_version"]
    man = json.loads((emb_dir / "manifest.json").read_text())
    assert man["status"] == "complete" and len(man["parts"]) == 6 and sum(p["rows"] for p in man["parts"]) == 512
    for role in ("train", "val", "test"):
        ds = load_split(rec, role)
        want, _ = extract_features(enc, ds.images, device="cpu", batch_size=64)
        sel = emb.splits == role
        assert list(emb.ids[sel]) == [f"{role}/{i}" for i in range(len(ds))]
        np.testing.assert_allclose(emb.vectors[sel], want, rtol=1e-5, atol=1e-5)
        assert (emb.labels[sel] == ds.labels).all()

    # the command (in this process: the kill and gloo tests start the console script), float16, the test split of a
    # floor backbone: the evaluation's pixels features
    p = run_main(capsys, "embed", TINY, "--backbone", "pixels", "--split", "test", "--out", tmp_path / "px",
                 "--device", "cpu")
    assert p.returncode == 0, p.stderr
    px = load_embeddings(tmp_path / "px")
    enc_px = build_encoder("pixels", EncoderContext(rec, EncoderOptions()))
    want, _ = extract_features(enc_px, load_split(rec, "test").images, device="cpu")
    assert px.sidecar["dtype"] == "float16" and px.vectors.shape == want.shape
    np.testing.assert_array_equal(px.vectors, want.astype(np.float16).astype(np.float32))


# ------------------------------------------------------------------------------------------- 2. SIGKILL and resume

def test_killed_embed_resumes_to_the_same_files(tmp_path, run_dir):
    from lejepa_domains import embed

    # 40 chunks of 8: killed after the 4th, the run has 36 to go (time enough to land the kill even when idle)
    args = [TINY, "--backbone", run_dir, "--split", "train", "--chunk-size", "8", "--batch-size", "8",
            "--device", "cpu", "--dtype", "float32"]
    killed = tmp_path / "killed"
    proc = subprocess.Popen([CLI, "embed", *map(str, args), "--out", str(killed)], stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True)
    t0 = time.time()
    while not (killed / "parts" / "part-000003.parquet").exists() and proc.poll() is None and time.time() - t0 < 120:
        time.sleep(0.005)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL, "the run finished before it could be killed"
    man = json.loads((killed / "manifest.json").read_text())
    written = sorted(p.name for p in (killed / "parts").glob("part-*.parquet"))
    assert man["status"] == "running" and 4 <= len(written) < 40 and not (killed / "embeddings.json").exists()
    with pytest.raises(lejepa_domains.DataError, match="not finished"):
        lejepa_domains.load_embeddings(killed)  # nothing half-done is read back

    p = cli("embed", *args, "--out", killed)  # the same command resumes
    assert p.returncode == 0, p.stderr
    assert "of 40 chunk(s) already written" in p.stderr
    whole = tmp_path / "whole"
    embed(TINY, str(run_dir), whole, split="train", chunk_size=8, batch_size=8, device="cpu", dtype="float32",
          quiet=True)
    assert _read_parts(killed) == _read_parts(whole)  # byte for byte; no temporary file left
    a, b = (json.loads((d / "manifest.json").read_text()) for d in (killed, whole))
    assert a == b


# ------------------------------------------------------------------------------------------- 3. two gloo processes

def test_two_gloo_processes_write_every_image_once(tmp_path, emb_dir, run_dir):
    from lejepa_domains import load_embeddings

    out = tmp_path / "ddp"
    p = cli("embed", TINY, "--backbone", run_dir, "--split", "test", "--devices", "2", "--device", "cpu",
            "--chunk-size", "10", "--dtype", "float32", "--out", out, env={"OMP_NUM_THREADS": "1"})
    assert p.returncode == 0, p.stderr
    got, ref = load_embeddings(out), load_embeddings(emb_dir)
    assert got.sidecar["processes"] == 2 and got.sidecar["chunks"] == 10
    assert len(set(got.ids)) == len(got.ids) == 96 and list(got.ids) == [f"test/{i}" for i in range(96)]
    sel = ref.splits == "test"
    # the same vectors (to float rounding: one thread per process sums convolutions in another order)
    np.testing.assert_allclose(got.vectors, ref.vectors[sel], rtol=1e-4, atol=1e-6)
    assert (got.labels == ref.labels[sel]).all()


# ------------------------------------------------------------------------------------------- 4. search and outliers

def test_search_and_outliers_equal_numpy(tmp_path, emb_dir):
    from lejepa_domains import load_embeddings, outliers, search

    emb = load_embeddings(emb_dir)
    x = emb.vectors / np.linalg.norm(emb.vectors, axis=1, keepdims=True)
    queries = ["test/0", "val/7", "train/100"]
    res = search(emb_dir, queries, k=16, grid=tmp_path / "s.png", quiet=True, device="cpu")
    for q, ids, scores in zip(queries, res.ids, res.scores):
        i = emb.row_of(q)
        sims = x @ x[i]
        sims[i] = -np.inf  # a query by id is not its own neighbour
        order = np.argsort(-sims, kind="stable")[:16]
        assert list(ids) == list(emb.ids[order])
        np.testing.assert_allclose(scores, sims[order], atol=1e-5)
    assert (tmp_path / "s.png").stat().st_size > 1000

    hn = search(emb_dir, queries, k=16, index="hnsw", grid=None, quiet=True, device="cpu")
    assert hn.index_info["recall_at_k"] >= 0.95 and (emb_dir / "index-hnsw.faiss").exists()

    o = outliers(emb_dir, top=8, k=5, out=tmp_path / "o.parquet", grid=tmp_path / "o.png", quiet=True, device="cpu")
    sims = x @ x.T
    np.fill_diagonal(sims, -np.inf)
    want = (1 - np.sort(sims, axis=1)[:, ::-1][:, :5]).mean(1)
    order = np.argsort(-want, kind="stable")
    np.testing.assert_allclose(o["scores"], want[order], atol=1e-5)
    import pyarrow.parquet as pq

    t = pq.read_table(tmp_path / "o.parquet")
    assert t.num_rows == 512 and t.column("id").to_pylist()[:8] == list(o["ids"][:8])


# ------------------------------------------------------------------------------------------- 5. bad input

def test_bad_input_is_one_line_exit_2_nothing_half_written(tmp_path, emb_dir, run_dir, capsys):
    from lejepa_domains import embed

    # a query that is not an image: one line, no grid
    fake = tmp_path / "fake.png"
    fake.write_text("not an image")
    p = cli("search", emb_dir, "--query", fake, "--grid", tmp_path / "g.png")
    assert p.returncode == 2 and len(error_lines(p)) == 1 and "fake.png" in p.stderr, p.stderr
    assert not (tmp_path / "g.png").exists()
    p = run_main(capsys, "search", emb_dir, "--query", "nosuch/1", "--no-grid")
    assert p.returncode == 2 and len(error_lines(p)) == 1 and "neither an id" in p.stderr

    # a query image of the right kind is embedded with the sidecar's backbone: its own row comes first
    from lejepa_domains import load_embeddings, load_recipe, search
    from lejepa_domains.data import load_split

    img = load_split(load_recipe(TINY), "test").images[3]
    (tmp_path / "q.png").write_bytes(encode(img))
    r = search(emb_dir, [str(tmp_path / "q.png")], k=3, grid=None, quiet=True, device="cpu")
    assert r.ids[0][0] == "test/3" and r.scores[0][0] == pytest.approx(1.0, abs=1e-5)

    # an embeddings folder mixing a part of another backbone (same dimension) or another dimension
    other = tmp_path / "other"
    embed(TINY, "random", other, dtype="float32", chunk_size=100, device="cpu", quiet=True)
    mixed = tmp_path / "mixed"
    shutil.copytree(emb_dir, mixed)
    shutil.copy(other / "parts" / "part-000001.parquet", mixed / "parts" / "part-000001.parquet")
    p = run_main(capsys, "search", mixed, "--query", "test/0", "--no-grid")
    assert p.returncode == 2 and len(error_lines(p)) == 1 and "another embedding" in p.stderr, p.stderr
    px = tmp_path / "px"
    embed(TINY, "pixels", px, dtype="float32", chunk_size=100, device="cpu", quiet=True)
    shutil.copytree(emb_dir, tmp_path / "dim")
    side = json.loads((px / "embeddings.json").read_text())
    (tmp_path / "dim" / "embeddings.json").write_text(json.dumps({**side, "key": json.loads(
        (emb_dir / "manifest.json").read_text())["key"]}))
    p = run_main(capsys, "outliers", tmp_path / "dim", "--out", tmp_path / "o.csv", "--no-grid")
    assert p.returncode == 2 and len(error_lines(p)) == 1 and "256-dimensional" in p.stderr, p.stderr
    assert not (tmp_path / "o.csv").exists()

    # a truncated Parquet part
    cut = tmp_path / "cut"
    shutil.copytree(emb_dir, cut)
    part = cut / "parts" / "part-000002.parquet"
    part.write_bytes(part.read_bytes()[:1000])
    p = run_main(capsys, "outliers", cut, "--out", tmp_path / "o.csv", "--no-grid")
    assert p.returncode == 2 and len(error_lines(p)) == 1 and "part-000002.parquet" in p.stderr, p.stderr
    assert "truncated" in p.stderr and not (tmp_path / "o.csv").exists()

    # an unwritable --out (a file where a folder must be), and an --out holding another embedding
    (tmp_path / "afile").write_text("x")
    p = run_main(capsys, "embed", TINY, "--backbone", "pixels", "--out", tmp_path / "afile" / "sub")
    assert p.returncode == 2 and len(error_lines(p)) == 1 and "afile" in p.stderr, p.stderr
    before = _read_parts(other)
    p = run_main(capsys, "embed", TINY, "--backbone", "pixels", "--out", other, "--device", "cpu")
    assert p.returncode == 2 and len(error_lines(p)) == 1 and "--overwrite" in p.stderr, p.stderr
    assert _read_parts(other) == before
    p = run_main(capsys, "embed", TINY, "--backbone", "pixels", "--out", other, "--device", "cpu", "--overwrite")
    assert p.returncode == 0 and load_embeddings(other).dim == 256


# ------------------------------------------------------------------------------------------- 6. --data, skipped images

def test_data_path_and_skip_bad_samples_named(tmp_path, capsys):
    from lejepa_domains import load_embeddings

    data = tmp_path / "pq"
    for k, (split, n) in enumerate({"train": 24, "val": 6, "test": 8}.items()):
        imgs, labels = class_images(n, 2, 16, 1, seed=k)
        enc = [encode(x) for x in imgs]
        if split == "train":
            enc[5] = b"not an image at all"
        write_parquet(data / f"{split}.parquet", enc, labels.tolist())
    recipe = tmp_path / "pqrecipe.py"
    recipe.write_text(Path(TINY).read_text()
                      .replace("source=TinyDigits(seed=0)", "source=LocalSource('/no/such/copy')")
                      .replace("num_classes=10", "num_classes=2")
                      .replace("class_names=[str(i) for i in range(10)]", "class_names=['a', 'b']")
                      .replace("from lejepa_domains.data.sources import",
                               "from lejepa_domains.data.hub import LocalSource\n"
                               "from lejepa_domains.data.sources import"))
    args = ["embed", recipe, "--backbone", "pixels", "--data", data, "--device", "cpu"]
    p = run_main(capsys, *args, "--out", tmp_path / "stop")
    assert p.returncode == 2 and "row 5" in p.stderr and not (tmp_path / "stop").exists()  # nothing left behind
    p = run_main(capsys, *args, "--out", tmp_path / "e", "--skip-bad-samples")
    assert p.returncode == 0, p.stderr
    e = load_embeddings(tmp_path / "e")
    assert e.sidecar["counts"]["skipped"] == 1 and "row 5" in e.sidecar["skipped"]["train"][0]
    assert len(e) == 37 and "train/5" in set(e.ids)  # ids count kept images; the source names the row
    assert e.sources[list(e.ids).index("train/5")].endswith("#6")


# ------------------------------------------------------------------------------------------- 7. the report's pictures

def test_report_label_efficiency_retrieval_and_map(tmp_path):
    from lejepa_domains import evaluate
    from lejepa_domains.evaluate.protocols.label_efficiency import draw_subsets

    rep = evaluate(TINY, baselines=["pixels"], out=tmp_path / "ev", device="cpu", use_cache=False, n_boot=20,
                   shots=(1,), n_sets=2, Cs=(1.0,), quiet=True, leakage=False, embedding_map="pca")
    le = rep["models"]["pixels"]["label_efficiency"]
    budgets = [p["per_class"] for p in le["points"]]
    assert budgets == [1, 10, "all"]  # 100 per class is more than tinydigits' largest class: that is "all"
    one, ten, every = le["points"]
    assert one["images"] == 10 and ten["images"] == 100 and every["images"] == 320 and len(one["draws"]) == 5
    assert one["ci95"][0] <= one["top1"] <= one["ci95"][1] and every["ci95"] is None
    assert one["top1"] == pytest.approx(np.mean(one["draws"]))
    subsets = draw_subsets(np.arange(40) % 4, 3, 2, 0)
    assert all(np.bincount((np.arange(40) % 4)[s]).tolist() == [3, 3, 3, 3] for s in subsets)
    for f in ("retrieval.png", "embedding_map.png", "label_efficiency.png"):
        assert (tmp_path / "ev" / f).stat().st_size > 2000 and f in rep["files"]
    md = (tmp_path / "ev" / "report.md").read_text()
    assert "## Label efficiency" in md and "| `pixels` |" in md and "[retrieval.png](retrieval.png)" in md
    assert rep["pictures"]["map"] == "pca" and len(rep["pictures"]["queries"]) == 8


# ------------------------------------------------------------------------------------------- 8. timm:NAME with a file

def test_timm_backbone_from_a_weights_file_and_an_image_query(tmp_path):
    import timm
    from safetensors.torch import save_file

    from lejepa_domains import embed, load_recipe, search
    from lejepa_domains.data import load_split

    torch.manual_seed(0)
    model = timm.create_model("resnet10t", pretrained=False, num_classes=0)  # RGB: grey digits go through [0, 0, 0]
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(tmp_path / "w.safetensors"))
    embed(TINY, "timm:resnet10t", tmp_path / "e", weights=tmp_path / "w.safetensors", split="test", device="cpu",
          dinov2_size=32, quiet=True)
    side = json.loads((tmp_path / "e" / "embeddings.json").read_text())
    assert side["dim"] == 512 and side["preprocessing"]["channel_map"] == [0, 0, 0]
    assert side["preprocessing"]["size"] == 32
    img = load_split(load_recipe(TINY), "test").images[7]
    (tmp_path / "q.png").write_bytes(encode(img))
    r = search(tmp_path / "e", [str(tmp_path / "q.png")], k=2, grid=None, quiet=True, device="cpu")
    assert r.ids[0][0] == "test/7" and r.scores[0][0] == pytest.approx(1.0, abs=1e-3)  # float16 vectors
