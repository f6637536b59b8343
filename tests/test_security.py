"""Issue 30: opening someone else's files runs none of their code.

Every crafted file here carries a payload that would create a marker file when unpickled (the control tests show
that it does, where the user opts in or a plain ``pickle.loads`` is used). Each command that reads such a file must
leave the marker absent, end with one clear line and exit 2 (or ignore the member, where documented), and change no
byte of the files that were there.
"""

from __future__ import annotations

import builtins
import io
import json
import os
import pickle
import re
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")

import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

from fake_hub import FakeHub  # noqa: E402
from fixtures_data import class_images, encode  # noqa: E402

HERE = Path(__file__).resolve().parent
PACKAGE = HERE.parent / "lejepa_domains"
TINY = str(HERE / "recipes" / "tinydigits.py")
CLI = str(Path(sys.executable).with_name("lejepa-domains"))
TOKEN = "hf_fake_token"  # what tests/fake_hub.py accepts


class Payload:
    """Unpickling this runs ``open(marker, "w")``: a stand-in for any code a crafted file could run."""

    def __init__(self, marker: Path):
        self.marker = str(marker)

    def __reduce__(self):
        return builtins.exec, (f"open({self.marker!r}, 'w').close()",)


def cli(*args: str, env: dict | None = None, cwd: Path | None = None) -> subprocess.CompletedProcess:
    full = {**os.environ, "NO_ALBUMENTATIONS_UPDATE": "1", "HF_HUB_DISABLE_TELEMETRY": "1", **(env or {})}
    return subprocess.run([CLI, *args], capture_output=True, text=True, env=full, cwd=cwd, timeout=600)


def one_error_line(p: subprocess.CompletedProcess, *parts: str, after_progress: bool = False) -> str:
    """Exit 2 and one ``error:`` line, no traceback; ``after_progress``: the study's header and progress lines
    (stderr) may come before it, the error line is the last."""
    assert p.returncode == 2, (p.returncode, p.stderr[-3000:])
    lines = [ln for ln in p.stderr.splitlines() if ln.strip()]
    errors = [ln for ln in lines if ln.startswith("error: ")]
    assert len(errors) == 1 and lines[-1] == errors[0] and (after_progress or len(lines) == 1), p.stderr
    assert "Traceback" not in p.stderr
    for part in parts:
        assert part in lines[-1], (part, lines[-1])
    return lines[-1]


def snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    """A real run folder (2 steps of tinydigits): config.json, checkpoint.pt, backbone pair."""
    from lejepa_domains import pretrain

    out = tmp_path_factory.mktemp("sec") / "run"
    pretrain(TINY, out=out, device="cpu", progress=False, epochs=1, batch_size=32, max_steps=2, seed=0)
    return out


def crafted_run(tiny_run: Path, where: Path, marker: Path, *, best: bool = False) -> Path:
    """A copy of ``tiny_run`` whose checkpoint.pt (or, with ``best``, checkpoint_best.pt beside a truncated
    checkpoint.pt) carries the payload inside an otherwise ordinary-looking checkpoint dict."""
    run = where / "crafted"
    shutil.copytree(tiny_run, run)
    real = torch.load(tiny_run / "checkpoint.pt", map_location="cpu", weights_only=True)
    evil = {**real, "model": Payload(marker)}
    if best:
        torch.save(evil, run / "checkpoint_best.pt")
        (run / "checkpoint.pt").write_bytes((tiny_run / "checkpoint.pt").read_bytes()[:2000])  # truncated
    else:
        torch.save(evil, run / "checkpoint.pt")
    return run


# ------------------------------------------------------------------------------------------------ checkpoints

def test_checkpoints_are_plain_and_the_previous_release_needs_only_the_allowlist(tiny_run):
    from lejepa_domains.runs import RunDir
    from lejepa_domains.runs.checkpoint import LEGACY_GLOBALS

    # this release: nothing but what the safe loader reads, no allowlist needed
    assert torch.serialization.get_unsafe_globals_in_checkpoint(str(tiny_run / "checkpoint.pt")) == []
    ck = torch.load(tiny_run / "checkpoint.pt", map_location="cpu", weights_only=True)
    rng = ck["rng"][0]
    assert isinstance(rng["python"][1], list) and isinstance(rng["numpy"]["key"], list)
    assert rng["torch"].dtype == torch.uint8
    # the previous releases: exactly the numpy / TorchVersion globals of LEGACY_GLOBALS
    allowed = {g[1] if isinstance(g, tuple) else f"{g.__module__}.{g.__qualname__}" for g in LEGACY_GLOBALS}
    for fixture in ("baseline", "baseline_0.1"):
        path = HERE / "fixtures" / fixture / "run_epoch1" / "checkpoint.pt"
        names = set(torch.serialization.get_unsafe_globals_in_checkpoint(str(path)))
        assert names and names <= allowed, names
        assert RunDir(path.parent).load_checkpoint()["step"] == 8  # safe loader + allowlist, no --trust-checkpoint


def test_pretrain_resume_refuses_a_crafted_checkpoint(tiny_run, tmp_path):
    marker = tmp_path / "PWNED"
    run = crafted_run(tiny_run, tmp_path, marker)
    before = snapshot(run)
    p = cli("pretrain", "--resume", str(run), "--device", "cpu")
    line = one_error_line(p, str(run / "checkpoint.pt"), "builtins.exec", "--trust-checkpoint")
    assert "could run code" in line
    assert not marker.exists()
    assert snapshot(run) == before


def test_a_crafted_best_checkpoint_is_not_run_either(tiny_run, tmp_path):
    """checkpoint.pt is truncated: the error's way out reads checkpoint_best.pt, safely."""
    marker = tmp_path / "PWNED"
    run = crafted_run(tiny_run, tmp_path, marker, best=True)
    before = snapshot(run)
    p = cli("pretrain", "--resume", str(run), "--device", "cpu")
    one_error_line(p, "cannot be read", "checkpoint_best.pt is not loaded either")
    assert not marker.exists()
    assert snapshot(run) == before


def test_trust_checkpoint_is_the_one_way_to_unpickle(tiny_run, tmp_path):
    """Control: the payload is live (the opt-in runs it), and only the opt-in does."""
    from lejepa_domains.runs import RunDir, UnsafeCheckpoint, trusted_checkpoints

    marker = tmp_path / "PWNED"
    run = RunDir(crafted_run(tiny_run, tmp_path, marker))
    with pytest.raises(UnsafeCheckpoint):
        run.load_checkpoint()
    assert run.checkpoint_path.is_file() and not marker.exists()
    with pytest.raises(UnsafeCheckpoint):  # "unreadable" is not "missing": a caller must not write over it
        run.checkpoint_step()
    with trusted_checkpoints():
        run.load_checkpoint()
    assert marker.exists()


@pytest.mark.slow  # ~10 s: trains the 8 remaining steps
def test_trust_checkpoint_resumes_a_file_the_user_wrote(tiny_run, tmp_path):
    import argparse

    run = tmp_path / "mine"
    shutil.copytree(tiny_run, run)
    ck = torch.load(run / "checkpoint.pt", map_location="cpu", weights_only=True)
    ck["note"] = argparse.Namespace(by="me")  # a Python object the safe loader does not read
    torch.save(ck, run / "checkpoint.pt")
    one_error_line(cli("pretrain", "--resume", str(run), "--device", "cpu"), "argparse.Namespace",
                   "--trust-checkpoint")
    p = cli("pretrain", "--resume", str(run), "--device", "cpu", "--trust-checkpoint", "--no-compile")
    assert p.returncode == 0, p.stderr[-3000:]
    assert torch.load(run / "checkpoint.pt", weights_only=True)["step"] == 10  # rewritten in the safe form


def test_ablate_refuses_a_crafted_run_and_overwrites_nothing(tiny_run, tmp_path):
    from lejepa_domains.recipe import load_recipe
    from lejepa_domains.studies.ablation import plan_study
    from lejepa_domains.studies.catalogue import BUDGETS, get_study

    (v, _, spec), *_ = plan_study(load_recipe(TINY), get_study("schedule"), BUDGETS["toy"], 1)
    marker = tmp_path / "PWNED"
    planted = tmp_path / "ablate" / "schedule" / v.name / f"seed{spec['seed']}"
    planted.parent.mkdir(parents=True)
    shutil.move(crafted_run(tiny_run, tmp_path, marker), planted)
    before = snapshot(planted)
    p = cli("ablate", TINY, "--study", "schedule", "--budget", "toy", "--out", str(tmp_path / "ablate"),
            "--device", "cpu")
    one_error_line(p, str(planted / "checkpoint.pt"), "--trust-checkpoint", after_progress=True)
    assert not marker.exists()
    assert snapshot(planted) == before


def test_compare_refuses_a_crafted_run_and_overwrites_nothing(tiny_run, tmp_path):
    """The foundation is timm's tiny test_vit from a safetensors file written here (offline)."""
    import timm
    from safetensors.torch import save_file

    from lejepa_domains.recipe import load_recipe
    from lejepa_domains.studies.catalogue import BUDGETS
    from lejepa_domains.studies.compare import plan_compare

    weights = tmp_path / "test_vit.safetensors"
    save_file(timm.create_model("test_vit", pretrained=False, num_classes=0).state_dict(), str(weights))
    plan, _ = plan_compare(load_recipe(TINY), "timm:test_vit", weights, BUDGETS["toy"], 1, None, None, "auto")
    arm, _, spec = plan[0]
    marker = tmp_path / "PWNED"
    planted = tmp_path / "compare" / arm / f"seed{spec['seed']}"
    planted.parent.mkdir(parents=True)
    shutil.move(crafted_run(tiny_run, tmp_path, marker), planted)
    before = snapshot(planted)
    p = cli("compare", TINY, "--foundation", "timm:test_vit", "--weights", str(weights), "--budget", "toy",
            "--out", str(tmp_path / "compare"), "--device", "cpu", "--dinov2-size", "32")
    one_error_line(p, str(planted / "checkpoint.pt"), "--trust-checkpoint", after_progress=True)
    assert not marker.exists()
    assert snapshot(planted) == before


# ------------------------------------------------------------------------------------------------ recipe files

EVIL_RECIPE = "open({marker!r}, 'w').close()  # any code a shared run folder could point at\n"


def crafted_recipe_run(tiny_run: Path, where: Path, marker: Path) -> tuple[Path, Path]:
    """A copy of ``tiny_run`` whose config.json names, as the recipe file it was trained from, a .py file that
    creates ``marker`` when it runs (the recipe name stays the run's, so no name check stops it)."""
    evil = where / "evil.py"
    evil.write_text(EVIL_RECIPE.format(marker=str(marker)))
    run = where / "shared-run"
    shutil.copytree(tiny_run, run)
    cfg = json.loads((run / "config.json").read_text())
    cfg["recipe"]["path"] = str(evil)
    (run / "config.json").write_text(json.dumps(cfg, indent=2))
    return run, evil


@pytest.mark.parametrize("command", ["pretrain", "eval"])
def test_a_run_folder_cannot_make_its_recipe_path_run(tiny_run, tmp_path, command):
    """``pretrain --resume RUN`` / ``eval --checkpoint RUN`` without a RECIPE: the recipe file path comes from the run
    folder, not from the user — it is not run; one line says how to name it."""
    marker = tmp_path / "PWNED"
    run, evil = crafted_recipe_run(tiny_run, tmp_path, marker)
    before = snapshot(run)
    args = ["--resume", str(run)] if command == "pretrain" else ["--checkpoint", str(run), "--no-plots"]
    p = cli(command, *args, "--device", "cpu", cwd=tmp_path)
    how = (f"lejepa-domains pretrain {evil} --resume {run}" if command == "pretrain"
           else f"lejepa-domains eval {evil} --checkpoint {run}")
    one_error_line(p, f"trained from recipe file {evil}", "recipe files are Python code and run only when you name "
                   "them", "not one you have named on this machine, or it changed since", how)
    assert not marker.exists()
    assert snapshot(run) == before and sorted(p.name for p in tmp_path.iterdir()) == ["evil.py", "shared-run"]


def test_a_run_folder_cannot_pass_a_path_off_as_a_recipe_name(tiny_run, tmp_path):
    """Only built-in recipes load by name: a config.json whose recipe *name* is a path runs nothing either."""
    from lejepa_domains import UserError, evaluate, pretrain

    marker = tmp_path / "PWNED"
    run, evil = crafted_recipe_run(tiny_run, tmp_path, marker)
    cfg = json.loads((run / "config.json").read_text())
    cfg["recipe"] = {"name": str(evil)}
    (run / "config.json").write_text(json.dumps(cfg))
    before = snapshot(run)
    with pytest.raises(UserError, match="which is not a built-in recipe here"):
        pretrain(resume=run, device="cpu", progress=False)
    with pytest.raises(UserError, match="which is not a built-in recipe here"):
        evaluate(checkpoint=run, device="cpu", plots=False, quiet=True)
    assert not marker.exists() and snapshot(run) == before


def test_devices_and_slurm_resumes_check_the_recipe_file_before_launching(tiny_run, tmp_path):
    """``--devices N`` (the launcher's preflight) and ``--slurm`` resume the same way: refused before anything starts."""
    from lejepa_domains import UserError
    from lejepa_domains.train.launch import pretrain_preflight
    from lejepa_domains.train.slurm import submit_pretrain

    pytest.importorskip("submitit")
    marker = tmp_path / "PWNED"
    run, evil = crafted_recipe_run(tiny_run, tmp_path, marker)
    before = snapshot(run)
    with pytest.raises(UserError, match=re.escape(f"trained from recipe file {evil}")):
        pretrain_preflight(None, resume=run)()
    with pytest.raises(UserError, match=re.escape(f"lejepa-domains pretrain {evil} --resume {run}")):
        submit_pretrain("executor=debug", None, {"resume": str(run)})
    assert not marker.exists() and snapshot(run) == before


def test_your_own_run_needs_no_naming_until_its_recipe_file_changes(tiny_run, tmp_path, monkeypatch):
    """The record of named recipe files: a run trained from a file you named resumes and evaluates without naming
    it again; once the file is edited it is refused until you name it; naming it works and is recorded anew."""
    from lejepa_domains import UserError
    from lejepa_domains.evaluate.run import resolve_run
    from lejepa_domains.recipe import load_recipe
    from lejepa_domains.recipe_trust import digest, is_named
    from lejepa_domains.train.setup import setup_run

    assert is_named(Path(TINY), digest(Path(TINY).read_bytes()))  # tiny_run's pretrain(TINY) recorded its file
    monkeypatch.setenv("LEJEPA_DOMAINS_HOME", str(tmp_path / "home"))  # a fresh record: nothing named yet
    mine = tmp_path / "mine.py"
    shutil.copy(TINY, mine)
    run = tmp_path / "run"  # tiny_run as if trained from mine.py (the console-script test below trains one)
    shutil.copytree(tiny_run, run)
    cfg = json.loads((run / "config.json").read_text())
    cfg["recipe"]["path"] = str(mine.resolve())
    (run / "config.json").write_text(json.dumps(cfg, indent=2))
    with pytest.raises(UserError, match="not one you have named on this machine"):
        setup_run(None, out=None, resume=run, init_from=None, data=None, skip_bad_samples=None, options={})
    load_recipe(str(mine))  # the user names it (as `pretrain mine.py` does)

    def resume(recipe=None):
        return setup_run(recipe, out=None, resume=run, init_from=None, data=None, skip_bad_samples=None, options={})

    def recipe_for_eval():
        return resolve_run(None, run, tmp_path / "runs", [], lambda _: None).recipe

    assert resume().recipe.path == str(mine.resolve()) and resume().checkpoint["step"] == 2
    assert recipe_for_eval().path == str(mine.resolve())

    mine.write_text(mine.read_text() + "\n# edited\n")
    with pytest.raises(UserError, match=re.escape(f"lejepa-domains pretrain {mine.resolve()} --resume {run}")):
        resume()
    with pytest.raises(UserError, match="or it changed since"):
        recipe_for_eval()
    with pytest.raises(UserError, match="trained on recipe 'tinydigits', not 'specimens'"):
        resume("specimens")
    assert resume(str(mine)).recipe.path == str(mine.resolve())  # named: used, and recorded with its new bytes
    assert resume().recipe.path == str(mine.resolve()) and recipe_for_eval().name == "tinydigits"


def test_the_record_never_stops_a_command(tmp_path, monkeypatch):
    """A corrupt record reads as empty; an unwritable home is skipped (the recipe still loads)."""
    from lejepa_domains.recipe import load_recipe
    from lejepa_domains.recipe_trust import digest, is_named, record_path

    home = tmp_path / "home"
    monkeypatch.setenv("LEJEPA_DOMAINS_HOME", str(home))
    home.mkdir()
    record_path().write_text("{not json")
    mine = tmp_path / "mine.py"
    shutil.copy(TINY, mine)
    sha = digest(mine.read_bytes())
    assert not is_named(mine, sha)
    assert load_recipe(str(mine)).name == "tinydigits" and is_named(mine, sha)  # rewritten whole
    assert [p.name for p in home.iterdir()] == ["trusted-recipes.json"]  # no temporary file left
    blocked = tmp_path / "file-not-folder"
    blocked.write_text("")
    monkeypatch.setenv("LEJEPA_DOMAINS_HOME", str(blocked / "home"))
    assert load_recipe(str(mine)).name == "tinydigits" and not is_named(mine, sha)
    monkeypatch.delenv("LEJEPA_DOMAINS_HOME")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert record_path() == tmp_path / "xdg" / "lejepa-domains" / "trusted-recipes.json"


@pytest.mark.slow  # 70 s on 2 busy cores (2026-12-06): one tiny epoch, the console script six times
def test_resume_and_eval_of_your_own_run_through_the_console_script(tmp_path, monkeypatch):
    monkeypatch.setenv("LEJEPA_DOMAINS_HOME", str(tmp_path / "home"))
    mine = tmp_path / "mine.py"
    shutil.copy(TINY, mine)
    run = tmp_path / "run"
    fast = ["--batch-size", "32", "--num-slices", "16", "--device", "cpu"]
    p = cli("pretrain", str(mine), "--epochs", "1", *fast, "--out", str(run))
    assert p.returncode == 0, p.stderr[-3000:]
    p = cli("pretrain", "--resume", str(run), "--device", "cpu")  # finished: nothing left, but the recipe loads
    assert p.returncode == 0, p.stderr[-3000:]
    p = cli("eval", "--checkpoint", str(run), "--out", str(tmp_path / "ev"), "--no-plots", "--bootstrap", "20",
            "--no-leakage", "--device", "cpu", "--no-cache")
    assert p.returncode == 0 and (tmp_path / "ev" / "report.json").is_file(), p.stderr[-3000:]
    mine.write_text(mine.read_text() + "\n# edited\n")
    before = snapshot(run)
    one_error_line(cli("pretrain", "--resume", str(run), "--device", "cpu"), "or it changed since",
                   f"lejepa-domains pretrain {mine.resolve()} --resume {run}")
    assert snapshot(run) == before
    p = cli("pretrain", str(mine), "--resume", str(run), "--device", "cpu")
    assert p.returncode == 0, p.stderr[-3000:]
    p = cli("pretrain", "--resume", str(run), "--device", "cpu")
    assert p.returncode == 0, p.stderr[-3000:]


# ------------------------------------------------------------------------------------------------ data files

SHARD_RECIPE = '''
from lejepa_domains import Recipe, TrainConfig
from lejepa_domains.data.shards import ShardSource

recipe = Recipe(
    name="pickleshards", source=ShardSource({{"train": {url!r}, "val": {url!r}, "test": {url!r}}},
                                            image_key="png", label_key={label_key!r}),
    num_classes=2, image_size=16, channels=1, mean=(0.3,), std=(0.3,), global_size=16, local_size=8,
    n_global=2, n_local=2, backbone="test_resnet", proj_hidden=(32,), proj_dim=16,
    train=TrainConfig(epochs=1, batch_size=8, num_slices=16, warmup_epochs=0),
)
'''


def pickle_shard(path: Path, marker: Path, n: int = 8) -> Path:
    """A WebDataset tar shard whose samples carry a PNG, a label, and a ``.pyd`` or ``.pickle`` member holding the
    payload (what webdataset's default decoders would unpickle)."""
    imgs, labels = class_images(n, 2, size=16, channels=1, seed=3)
    evil = pickle.dumps({"meta": Payload(marker)})
    with tarfile.open(path, "w") as tf:
        for i in range(n):
            for ext, data in (("png", encode(imgs[i])), ("cls", str(int(labels[i])).encode()),
                              ("pyd" if i % 2 else "pickle", evil)):
                info = tarfile.TarInfo(f"s{i:04d}.{ext}")
                info.size = len(data)
                tf.addfile(info, io.BytesIO(data))
    return path


def test_pickle_members_of_a_tar_shard_are_ignored(tmp_path, monkeypatch):
    monkeypatch.setenv("LEJEPA_DOMAINS_DATA_CACHE", str(tmp_path / "cache"))
    marker = tmp_path / "PWNED"
    shard = pickle_shard(tmp_path / "train-000000.tar", marker)
    pickle.loads(pickle.dumps(Payload(tmp_path / "CONTROL")))  # control: the payload is live when unpickled
    assert (tmp_path / "CONTROL").exists()
    before = shard.read_bytes()

    from lejepa_domains.data.shards import ShardSource

    src = ShardSource({"train": str(shard)}, image_key="png", label_key="cls", image_size=16, channels=1)
    got = src.load("train")
    assert len(got) == 8 and not marker.exists()
    recipe = tmp_path / "pickleshards.py"
    recipe.write_text(SHARD_RECIPE.format(url=str(shard), label_key="cls"))
    p = cli("recipes", "check", str(recipe), "--out", str(tmp_path / "views"),
            env={"LEJEPA_DOMAINS_DATA_CACHE": str(tmp_path / "cache")})
    assert p.returncode == 0, p.stderr[-3000:]
    assert not marker.exists() and shard.read_bytes() == before


def test_a_pickle_member_named_as_label_or_image_key_is_refused(tmp_path):
    marker = tmp_path / "PWNED"
    shard = pickle_shard(tmp_path / "train-000000.tar", marker)
    before = snapshot(tmp_path)
    recipe = tmp_path / "pickleshards.py"
    recipe.write_text(SHARD_RECIPE.format(url=str(shard), label_key="pyd"))
    before = snapshot(tmp_path)
    p = cli("recipes", "check", str(recipe), "--out", str(tmp_path / "views"),
            env={"LEJEPA_DOMAINS_DATA_CACHE": str(tmp_path / "cache")})
    one_error_line(p, "label_key='pyd'", "never loaded")
    assert not marker.exists() and snapshot(tmp_path) == before

    from lejepa_domains.data.shards import ShardSource
    from lejepa_domains.errors import UserError

    with pytest.raises(UserError, match="image_key='png;pickle'"):
        ShardSource({"train": str(shard)}, image_key="png;pickle")


NPZ_RECIPE = '''
from lejepa_domains import Recipe, TrainConfig
from lejepa_domains.data.hub import LocalSource

recipe = Recipe(
    name="objnpz", source=LocalSource({data!r}), num_classes=2, image_size=16, channels=1, mean=(0.3,), std=(0.3,),
    global_size=16, local_size=8, n_global=2, n_local=2, backbone="test_resnet", proj_hidden=(32,), proj_dim=16,
    train=TrainConfig(epochs=1, batch_size=8, num_slices=16, warmup_epochs=0),
)
'''


@pytest.mark.parametrize("which", ["train_images", "train_labels"])
def test_an_npz_with_an_object_array_is_refused(tmp_path, which):
    marker = tmp_path / "PWNED"
    imgs, labels = class_images(8, 2, size=16, channels=1, seed=4)
    arrays = {f"{s}_{k}": v for s in ("train", "val", "test")
              for k, v in (("images", imgs[..., 0]), ("labels", labels[:, None].astype(np.uint8)))}
    obj = np.empty(arrays[which].shape, dtype=object)
    obj.flat[0] = Payload(marker)
    arrays[which] = obj
    data = tmp_path / "objects.npz"
    np.savez(data, **arrays)  # numpy pickles the object array into the file
    recipe = tmp_path / "objnpz.py"
    recipe.write_text(NPZ_RECIPE.format(data=str(data)))
    before = snapshot(tmp_path)
    p = cli("pretrain", str(recipe), "--out", str(tmp_path / "run"), "--device", "cpu",
            env={"LEJEPA_DOMAINS_DATA_CACHE": str(tmp_path / "cache")})
    one_error_line(p, f"array {which!r}", "Python objects", "never loaded")
    assert not marker.exists()
    assert not (tmp_path / "run").exists() and snapshot(tmp_path) == before  # nothing written, nothing changed


# ------------------------------------------------------------------------------------------------ the Hub token

def test_the_push_token_lands_nowhere(tiny_run, tmp_path, monkeypatch):
    run = tmp_path / "run"
    shutil.copytree(tiny_run, run)
    out = tmp_path / "export"
    with FakeHub() as hub:
        env = {"HF_ENDPOINT": hub.url, "HF_TOKEN": TOKEN, "HF_HUB_DISABLE_XET": "1", "HF_HUB_OFFLINE": "0"}
        p = cli("export", str(run), "--to", str(out), "--push", "my-lab/tiny", env=env)
        assert p.returncode == 0, p.stderr[-3000:]
        assert hub.commits, "nothing was pushed"
        pushed = b"".join(hub.commits[0]["files"].values())
        # the upload failed and the server's answer echoes the credential: the error line does not
        hub.fail_commit, hub.fail_message = True, f"bad credential Bearer {TOKEN}"
        p2 = cli("export", str(run), "--push", "my-lab/tiny2", env=env)
        one_error_line(p2, "--push my-lab/tiny2: the upload failed", "bad credential")  # quoted, token cut

        import huggingface_hub
        from huggingface_hub import HfApi

        from lejepa_domains.errors import UserError
        from lejepa_domains.export import export_run

        monkeypatch.setattr(huggingface_hub.constants, "ENDPOINT", hub.url)
        monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)
        monkeypatch.setenv("HF_HUB_OFFLINE", "0")
        monkeypatch.delenv("HF_TOKEN", raising=False)
        with pytest.raises(UserError) as e:  # the token as an argument of the Python API
            export_run(run, push="my-lab/tiny3", token=TOKEN, api=HfApi(endpoint=hub.url, token=TOKEN))
    assert TOKEN not in str(e.value) and "the upload failed" in str(e.value)
    from lejepa_domains.export.hub import redact

    assert redact(f"401 for Bearer {TOKEN}", TOKEN) == "401 for Bearer hf_***"
    assert redact("token hf_AbCdEfGh12345678 rejected", None) == "token hf_*** rejected"  # any hf_ token
    for text in (p.stdout, p.stderr, p2.stdout, p2.stderr):
        assert TOKEN not in text
    assert TOKEN.encode() not in pushed
    for folder in (run, out):
        for f in folder.rglob("*"):
            if f.is_file():
                assert TOKEN.encode() not in f.read_bytes(), f


# ------------------------------------------------------------------------------------------------ the source

def test_no_unsafe_loading_switch_in_the_package():
    """``weights_only=False``, ``allow_pickle=True``, ``trust_remote_code=True`` and eval/exec of file contents appear
    nowhere in the package — except the one full unpickling behind ``--trust-checkpoint``."""
    bad = re.compile(r"weights_only\s*=\s*False|allow_pickle\s*=\s*True|trust_remote_code\s*=\s*True"
                     r"|(?<![\w.])(eval|exec)\(")
    found = []
    for f in sorted(PACKAGE.rglob("*.py")):
        for i, line in enumerate(f.read_text(encoding="utf-8").splitlines(), 1):
            if bad.search(line):
                found.append(f"{f.relative_to(PACKAGE.parent)}:{i}: {line.strip()}")
    trusted = [x for x in found if x.startswith("lejepa_domains/runs/checkpoint.py:")
               and x.endswith('torch.load(path, map_location="cpu", weights_only=False)')]
    assert len(trusted) == 1, found
    assert [x for x in found if x not in trusted] == []
    # ... and that one line is reached only when trust was given
    src = (PACKAGE / "runs" / "checkpoint.py").read_text(encoding="utf-8")
    body = src[src.index("def read_checkpoint"):]
    assert "if not trust:" in body and body.index("if not trust:") < body.index("weights_only=False")
