"""The wheel works on its own: built from a copy of the checkout, installed (non-editable) into a fresh venv, every
command's ``--help`` and a toy ``ablate`` run through that venv's ``lejepa-domains`` console script.

Installing torch & co. into a fresh venv would take gigabytes and minutes, so the fresh venv borrows the running
interpreter's dependencies: a ``.pth`` file in its site-packages lists the running interpreter's package folders.
The fresh venv's own site-packages comes first on sys.path, so the wheel installed there is what gets imported, even
when the running environment has lejepa_domains installed too (checked).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
from test_packaging import expected_files

ROOT = Path(__file__).resolve().parents[1]
TINY = ROOT / "tests" / "recipes" / "tinydigits.py"
KNOWN_COMMANDS = {("pretrain",), ("eval",), ("ablate",), ("recipes",), ("recipes", "show"), ("recipes", "new"),
                  ("recipes", "check"), ("card",)}  # a lower bound: the commands found in the app are all tested

_TOP_IGNORE = {".git", "build", "dist", "runs", ".whl", ".gl", ".ci-cache"}
_ANY_IGNORE = {"__pycache__", ".pytest_cache", ".mypy_cache", ".ruff_cache"}


def _ignore(folder: str, names: list[str]) -> set[str]:
    top = Path(folder).resolve() == ROOT
    return {n for n in names if n in _ANY_IGNORE or n.endswith((".egg-info", ".pyc"))
            or (top and (n in _TOP_IGNORE or n.startswith(".venv")))}


def _run(cmd, *, timeout=120, **kw) -> subprocess.CompletedProcess:
    return subprocess.run([str(c) for c in cmd], capture_output=True, text=True, timeout=timeout, **kw)


def _dependency_dirs() -> list[str]:
    """The running interpreter's package folders (site-packages and what its .pth files add), not the standard
    library, the current folder or PYTHONPATH (which may hold the checkout)."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}
    code = ("import json, os, sys, sysconfig\n"
            "std = {os.path.realpath(sysconfig.get_paths()[k]) for k in ('stdlib', 'platstdlib')}\n"
            "std |= {os.path.join(s, 'lib-dynload') for s in std}\n"
            "print(json.dumps([p for p in sys.path if p and not p.endswith('.zip') and os.path.realpath(p) not in std]))")
    p = _run([sys.executable, "-P", "-c", code], env=env, cwd="/")
    assert p.returncode == 0, p.stderr
    return [d for d in json.loads(p.stdout) if Path(d).is_dir() and Path(d).resolve() != ROOT]


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    """The wheel `pip wheel` builds from a copy of the checkout (so the build writes nothing into the checkout)."""
    base = tmp_path_factory.mktemp("wheel")
    src = base / "src"
    shutil.copytree(ROOT, src, ignore=_ignore, symlinks=True)
    p = _run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--no-index",
              "--disable-pip-version-check", "-q", "-w", base / "dist", src], timeout=300)
    assert p.returncode == 0, f"building the wheel failed:\n{p.stdout}\n{p.stderr}"
    wheels = list((base / "dist").glob("lejepa_domains-*.whl"))
    assert len(wheels) == 1, wheels
    return wheels[0]


@pytest.fixture(scope="module")
def venv(wheel, tmp_path_factory) -> dict:
    """A fresh venv with the wheel installed (non-editable) and the running interpreter's dependencies on its path."""
    return make_venv(wheel, tmp_path_factory.mktemp("venv"))


def make_venv(wheel: Path, base: Path, extra_wheels: tuple[Path, ...] = ()) -> dict:
    """The fresh venv; ``extra_wheels`` are installed into it too and take precedence over the borrowed packages
    (e.g. the oldest typer and click the project allows)."""
    env_dir = base / "venv"
    p = _run([sys.executable, "-m", "venv", "--without-pip", env_dir])
    assert p.returncode == 0, p.stderr
    py = env_dir / "bin" / "python"
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV")}
    env.update(NO_ALBUMENTATIONS_UPDATE="1", HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1", PYTHONNOUSERSITE="1",
               PYTHONSAFEPATH="1", COLUMNS="200", PIP_DISABLE_PIP_VERSION_CHECK="1",
               LEJEPA_DOMAINS_CACHE=str(base / "feature-cache"), LEJEPA_DOMAINS_DATA_CACHE=str(base / "data-cache"),
               MPLCONFIGDIR=str(base / "mpl"), VIRTUAL_ENV=str(env_dir))
    env["PATH"] = os.pathsep.join([str(env_dir / "bin"), env.get("PATH", "")])
    q = _run([py, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"], env=env, cwd=base)
    assert q.returncode == 0, q.stderr
    site = Path(q.stdout.strip())
    deps = _dependency_dirs()
    assert deps, "found no package folders of the running interpreter"
    (site / "_outer_dependencies.pth").write_text("".join(f"{d}\n" for d in deps))
    # pip comes from the running interpreter's packages; --ignore-installed: a lejepa-domains installed out there
    # must neither satisfy nor be touched by this install
    r = _run([py, "-m", "pip", "install", "--no-deps", "--no-index", "--ignore-installed", "-q", wheel,
              *extra_wheels], env=env, cwd=base, timeout=300)
    assert r.returncode == 0, f"installing the wheel failed:\n{r.stdout}\n{r.stderr}"
    exe = env_dir / "bin" / "lejepa-domains"
    assert exe.is_file(), "the wheel installed no lejepa-domains console script"
    return {"dir": env_dir, "python": py, "exe": exe, "env": env, "cwd": base, "site": site}


def test_wheel_ships_every_module_recipe_and_card(wheel):
    names = set(zipfile.ZipFile(wheel).namelist())
    missing = sorted(expected_files() - names)
    assert not missing, f"the wheel lacks {missing} (pyproject.toml's package discovery)"
    assert "lejepa_domains/data_cards/specimens.md" in names and "lejepa_domains/recipes/specimens.py" in names
    tops = {n.split("/", 1)[0] for n in names}
    dist_info = {t for t in tops if t.endswith(".dist-info")}
    assert tops - dist_info == {"lejepa_domains"}, f"the wheel ships more than lejepa_domains: {sorted(tops)}"
    assert not [n for n in names if "__pycache__" in n or n.endswith(".pyc")]
    entry_points = next(zipfile.Path(wheel, f"{d}/entry_points.txt") for d in dist_info).read_text()
    assert "lejepa-domains = lejepa_domains.cli:main" in entry_points


def test_fresh_venv_imports_the_wheel_not_another_copy(venv):
    code = ("import lejepa_domains, lejepa_domains.studies, lejepa_domains.method.penalties, torch; "
            "print(lejepa_domains.__file__)")
    p = _run([venv["python"], "-c", code], env=venv["env"], cwd=venv["cwd"])
    assert p.returncode == 0, p.stderr
    imported = Path(p.stdout.strip().splitlines()[-1]).resolve()
    assert imported.is_relative_to(Path(venv["site"]).resolve()), \
        f"the fresh venv imported {imported}, not the wheel installed in {venv['site']}"


def _commands(venv) -> list[tuple[str, ...]]:
    """Every command and subcommand of the installed typer app (so a new command is covered without editing this)."""
    code = ("import json, click, typer\n"
            "from lejepa_domains.cli import app\n"
            "def walk(cmd, path):\n"
            "    out = [path]\n"
            "    for name, sub in sorted(getattr(cmd, 'commands', {}).items()):\n"
            "        out += walk(sub, path + [name])\n"
            "    return out\n"
            "print(json.dumps(walk(typer.main.get_command(app), [])))\n")
    p = _run([venv["python"], "-c", code], env=venv["env"], cwd=venv["cwd"])
    assert p.returncode == 0, p.stderr
    return [tuple(c) for c in json.loads(p.stdout)]


def test_every_command_help_runs_from_the_fresh_venv(venv):
    commands = _commands(venv)
    assert KNOWN_COMMANDS <= set(commands), f"commands missing from the app: {KNOWN_COMMANDS - set(commands)}"
    top = _run([venv["exe"], "--help"], env=venv["env"], cwd=venv["cwd"])
    assert top.returncode == 0, top.stderr
    for c in commands:
        if len(c) == 1:
            assert c[0] in top.stdout, f"`lejepa-domains --help` does not list {c[0]}"
    failures = []
    for c in commands:
        p = _run([venv["exe"], *c, "--help"], env=venv["env"], cwd=venv["cwd"])
        if p.returncode != 0 or "Usage" not in p.stdout:
            failures.append(f"lejepa-domains {' '.join(c)} --help: exit {p.returncode}\n{p.stdout[-2000:]}"
                            f"\n{p.stderr[-2000:]}")
    assert not failures, "\n\n".join(failures)


def test_recipes_listing_from_the_fresh_venv(venv):
    p = _run([venv["exe"], "recipes"], env=venv["env"], cwd=venv["cwd"])
    assert p.returncode == 0, p.stderr
    for name in ("specimens", "digits"):
        assert name in p.stdout


@pytest.mark.slow  # 15–30 s on 2 idle cores (measured 2026-12-01): outside the default suite's 12-minute budget
def test_toy_ablate_from_the_fresh_venv(venv, tmp_path):
    out = tmp_path / "abl"
    p = _run([venv["exe"], "ablate", TINY, "--study", "schedule", "--budget", "toy", "--out", out, "--device", "cpu"],
             env={**venv["env"], "OMP_NUM_THREADS": "2"}, cwd=tmp_path, timeout=300)
    assert p.returncode == 0, f"{p.stdout[-3000:]}\n{p.stderr[-3000:]}"
    report = json.loads((out / "schedule" / "ablation.json").read_text())
    assert report["study"] == "schedule" and report["budget"]["name"] == "toy" and report["complete"]
    assert {v["name"] for v in report["variants"]} == {"constant", "warmup-cosine"}


# ------------------------------------------------------------------------------- the oldest typer/click allowed

OLDEST = os.environ.get("LEJEPA_OLDEST_CLI_WHEELS")  # a folder holding the oldest typer and click wheels (.ci/run)


def _usage_cases(exe: Path, env: dict, cwd: Path) -> list[str]:
    """Run the usage-error cases; return what is wrong with each (empty: all fine)."""
    cases = [(["pretrain", str(TINY), "--epoch", "2"], ["No such option: --epoch", "lejepa-domains pretrain"]),
             (["pretrain", str(TINY), "--epochs", "1.5"], ["'--epochs'", "'1.5'"]),
             (["pretrain", "--out"], ["'--out' requires an argument"]),
             (["frobnicate"], ["No such command"]),
             (["card"], ["Missing argument"])]
    problems = []
    for args, expect in cases:
        p = _run([exe, *args], env=env, cwd=cwd)
        lines = [ln for ln in p.stderr.splitlines() if ln.strip()]
        text = " ".join(" ".join(lines).split())
        if p.returncode != 2 or "Traceback" in p.stderr or not lines or not lines[0].startswith("error: ") \
                or not all(e in text for e in expect):
            problems.append(f"{args}: exit {p.returncode}\n{p.stderr[-1500:]}")
    p = _run([exe, "--version"], env=env, cwd=cwd)
    if p.returncode != 0 or not p.stdout.startswith("lejepa-domains "):
        problems.append(f"--version: exit {p.returncode} {p.stdout!r} {p.stderr[-500:]}")
    return problems


def test_usage_errors_are_one_line_with_the_typer_pip_resolves(venv):
    import typer

    assert not _usage_cases(venv["exe"], venv["env"], venv["cwd"]), f"typer {typer.__version__}"


@pytest.mark.skipif(not OLDEST, reason="set LEJEPA_OLDEST_CLI_WHEELS to a folder with the oldest typer/click wheels "
                                       "pyproject.toml allows (.ci/run downloads them)")
def test_usage_errors_are_one_line_with_the_oldest_typer_allowed(wheel, tmp_path_factory):
    import tomllib

    extra = tuple(sorted(Path(OLDEST).glob("*.whl")))
    names = {w.name.split("-")[0].lower().replace("_", "-"): w.name.split("-")[1] for w in extra}
    bounds = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    typer_bound = next(b for b in bounds if b.replace(" ", "").startswith("typer>="))
    from packaging.version import Version

    assert Version(names.get("typer", "0")) == Version(typer_bound.split(">=")[1].split(",")[0]), (names, typer_bound)
    v = make_venv(wheel, tmp_path_factory.mktemp("oldest"), extra)
    q = _run([v["python"], "-c", "import typer, click; print(typer.__version__, click.__version__)"], env=v["env"],
             cwd=v["cwd"])
    assert q.stdout.split()[0] == names["typer"], q.stdout + q.stderr  # (typer-slim carries typer's code)
    assert not _usage_cases(v["exe"], v["env"], v["cwd"]), f"with {q.stdout.strip()}"
