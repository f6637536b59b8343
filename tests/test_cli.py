"""CLI: bad input gives one clear line, exit code 2, no traceback, nothing written; listing and recipes."""

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from lejepa_domains.cli import main

ROOT = Path(__file__).resolve().parents[1]


def run_cli(capsys, *argv):
    code = 0
    try:
        main(list(argv))
    except SystemExit as e:
        code = e.code
    cap = capsys.readouterr()
    return code, cap.out, cap.err


BAD = [
    (["pretrain", "no-such-recipe"], "unknown recipe 'no-such-recipe'"),
    (["pretrain", "digits", "--epochs", "0"], "--epochs must be >= 1"),
    (["pretrain", "digits", "--batch-size", "1"], "--batch-size must be >= 2"),
    (["pretrain", "digits", "--lambda", "1.5"], "--lambda must be in [0, 1]"),
    (["pretrain", "digits", "--device", "tpu9"], "--device"),
    (["pretrain", "digits", "--batch-size", "100000"], "exceeds the"),
    (["pretrain", "digits", "--schedule", "wavy"], "--schedule must be"),
]


@pytest.mark.parametrize("argv,expected", BAD, ids=[" ".join(a[2:]) or a[1] for a, _ in BAD])
def test_bad_input_one_line_exit_2_nothing_written(capsys, tmp_path, argv, expected):
    out = tmp_path / "run"
    code, stdout, err = run_cli(capsys, *argv, "--out", str(out))
    assert code == 2
    assert expected in err
    assert "Traceback" not in err and len(err.strip().splitlines()) <= 2  # one line (rich may wrap long lines)
    assert err.startswith("error:")
    assert not out.exists(), "nothing may be written on bad input"


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_cuda_requested_without_gpu(capsys, tmp_path):
    code, _, err = run_cli(capsys, "pretrain", "digits", "--device", "cuda", "--out", str(tmp_path / "r"))
    assert code == 2 and "CUDA is not available" in err and not (tmp_path / "r").exists()


def test_recipe_file_errors(capsys, tmp_path):
    bad_syntax = tmp_path / "broken.py"
    bad_syntax.write_text("recipe = Recipe(\n")
    code, _, err = run_cli(capsys, "pretrain", str(bad_syntax), "--out", str(tmp_path / "r"))
    assert code == 2 and "syntax error at line" in err and str(bad_syntax) in err

    no_recipe = tmp_path / "empty.py"
    no_recipe.write_text("x = 1\n")
    code, _, err = run_cli(capsys, "pretrain", str(no_recipe), "--out", str(tmp_path / "r"))
    assert code == 2 and "must define `recipe = Recipe(...)`" in err

    missing = tmp_path / "missing.py"
    code, _, err = run_cli(capsys, "pretrain", str(missing), "--out", str(tmp_path / "r"))
    assert code == 2 and "does not exist" in err

    unreadable = tmp_path / "raises.py"
    unreadable.write_text("import no_such_module_xyz\n")
    code, _, err = run_cli(capsys, "pretrain", str(unreadable), "--out", str(tmp_path / "r"))
    assert code == 2 and "failed to import" in err and "No module named" in err
    assert not (tmp_path / "r").exists()


def test_existing_run_refused_without_resume_or_overwrite(capsys, tmp_path):
    out = tmp_path / "run"
    out.mkdir()
    (out / "config.json").write_text('{"keep": true}')
    code, _, err = run_cli(capsys, "pretrain", "digits", "--out", str(out))
    assert code == 2 and "already holds a run" in err and "--resume" in err
    assert (out / "config.json").read_text() == '{"keep": true}'


def test_user_recipe_file_trains(capsys, tmp_path):
    src = (ROOT / "recipes" / "digits.py").read_text().replace('name="digits"', 'name="mydigits"')
    path = tmp_path / "mydigits.py"
    path.write_text(src)
    from lejepa_domains import pretrain

    res = pretrain(str(path), out=tmp_path / "run", device="cpu", progress=False, epochs=1, max_steps=2,
                   batch_size=32, num_slices=32)
    assert res.run_dir.joinpath("backbone.safetensors").is_file()
    import json

    cfg = json.loads((res.run_dir / "config.json").read_text())
    assert cfg["recipe"]["name"] == "mydigits" and cfg["recipe"]["path"] == str(path.resolve())


def test_recipes_list_shows_builtins(capsys):
    code, out, _ = run_cli(capsys, "recipes")
    assert code == 0
    assert "specimens" in out and "digits" in out


def test_console_script_subprocess_exit_code(tmp_path):
    """The real entry point (python -m lejepa_domains) exits 2 with one line and no traceback."""
    env = {**os.environ, "NO_ALBUMENTATIONS_UPDATE": "1"}
    p = subprocess.run([sys.executable, "-m", "lejepa_domains", "pretrain", "nope", "--out", str(tmp_path / "r")],
                       capture_output=True, text=True, env=env, timeout=120)
    assert p.returncode == 2
    assert "Traceback" not in p.stderr and "unknown recipe 'nope'" in p.stderr


def test_tensorboard_missing_is_a_clear_error(capsys, tmp_path):
    try:
        import tensorboard  # noqa: F401
        pytest.skip("tensorboard is installed here")
    except ImportError:
        pass
    code, _, err = run_cli(capsys, "pretrain", "digits", "--tensorboard", "--out", str(tmp_path / "r"))
    assert code == 2 and "needs the tensorboard package" in err and not (tmp_path / "r").exists()
