"""The documentation cannot drift from the CLI.

* Every ``lejepa-domains …`` command shown in a fenced code block of ``README.md`` or ``docs/**/*.md`` names a real
  (sub)command, and every ``--flag`` it shows appears in that command's ``--help``: the installed console script is
  run once per distinct command path, so a renamed flag fails here instead of in a reader's terminal.
* ``README.md`` stays at most 200 lines (the manual lives in ``docs/``).
* ``mkdocs build --strict`` passes (skipped, with the reason, where the ``docs`` extra is not installed).
"""

from __future__ import annotations

import importlib.util
import os
import re
import shlex
import shutil
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PROG = "lejepa-domains"
README_MAX_LINES = 200
FENCE = re.compile(r"^(\s*)(```+|~~~+)")
COMMAND_ROW = re.compile(r"^(?:│ |  )([a-z][a-z0-9_-]*)\s")  # a row of the Commands panel (rich box or plain)


def doc_files() -> list[Path]:
    docs = sorted(p for p in (ROOT / "docs").rglob("*.md") if "hooks" not in p.relative_to(ROOT / "docs").parts)
    return [ROOT / "README.md", *docs]


def code_blocks(text: str) -> list[str]:
    """The contents of the fenced code blocks of a Markdown text."""
    blocks, current, fence = [], None, None
    for line in text.splitlines():
        m = FENCE.match(line)
        if current is None:
            if m:
                current, fence = [], m.group(2)
        elif m and m.group(2).startswith(fence[0]) and len(m.group(2)) >= len(fence) and not line.strip()[len(m.group(2)):]:
            blocks.append("\n".join(current))
            current = None
        else:
            current.append(line)
    return blocks


def shown_commands(text: str) -> list[list[str]]:
    """The argument lists that follow ``lejepa-domains`` in the code blocks of ``text`` (continuation lines joined,
    cut at a shell operator or a comment)."""
    found = []
    for block in code_blocks(text):
        for line in block.replace("\\\n", " ").splitlines():
            for m in re.finditer(rf"(?:^|(?<=[\s/;&|(]))({re.escape(PROG)})(?=\s|$)", line):
                lexer = shlex.shlex(line[m.end():], posix=True, punctuation_chars=True)
                lexer.whitespace_split = True
                args = []
                try:
                    for tok in lexer:
                        if tok and set(tok) <= set("();<>|&"):
                            break
                        args.append(tok)
                except ValueError:  # an unbalanced quote in prose-like code: take what was read
                    pass
                found.append(args)
    return found


def flags_of(args: list[str]) -> set[str]:
    out = set()
    for a in args:
        for part in a.strip("[]").split("|"):
            if part.startswith("--") and len(part) > 2:
                out.add(part.split("=", 1)[0].rstrip("],.:"))
    return out


EXE = Path(sys.executable).with_name(PROG)  # the installed console script beside this interpreter (CI puts no venv on
# PATH)


def _help(path: tuple[str, ...]) -> tuple[int, str]:
    exe = str(EXE)
    env = {**os.environ, "COLUMNS": "200", "NO_COLOR": "1", "TERM": "dumb", "NO_ALBUMENTATIONS_UPDATE": "1"}
    res = subprocess.run([exe, *path, "--help"], capture_output=True, text=True, env=env, timeout=120)
    return res.returncode, res.stdout + res.stderr


def subcommands(help_text: str) -> set[str]:
    names, inside = set(), False
    for line in help_text.splitlines():
        if "Commands" in line:
            inside = True
            continue
        if inside:
            if line.startswith("╰") or (not line.strip()):
                inside = False
                continue
            m = COMMAND_ROW.match(line)
            if m:
                names.add(m.group(1))
    return names


def collect() -> dict[str, list[list[str]]]:
    """file (relative) → the argument lists of the commands it shows."""
    return {str(p.relative_to(ROOT)): shown_commands(p.read_text(encoding="utf-8")) for p in doc_files()}


def test_docs_show_commands():
    shown = collect()
    assert sum(map(len, shown.values())) >= 10, f"expected commands in the docs' code blocks, found {shown}"
    assert shown["README.md"], "README.md shows no lejepa-domains command in a code block"


def test_every_command_and_flag_the_docs_show_exists():
    if not EXE.exists():
        pytest.fail(f"the console script {EXE} is not installed: install the project (pip install '.[test]')")
    helps: dict[tuple[str, ...], tuple[int, str]] = {}

    def ensure(paths):
        todo = [p for p in dict.fromkeys(paths) if p not in helps]
        with ThreadPoolExecutor(max_workers=4) as pool:
            for p, r in zip(todo, pool.map(_help, todo)):
                helps[p] = r

    # Resolve each command's path level by level: one `--help` per distinct path, run in parallel per level.
    uses = [(f, args) for f, lst in collect().items() for args in lst]
    resolved: list[list] = [[f, args, (), 0] for f, args in uses]  # file, args, path so far, next index
    ensure([()])
    while True:
        nxt = []
        for item in resolved:
            f, args, path, i = item
            if i is None:
                continue
            subs = subcommands(helps[path][1])
            if i < len(args) and not args[i].startswith("-") and args[i] in subs:
                item[2], item[3] = path + (args[i],), i + 1
                nxt.append(item[2])
            else:
                item[3] = None
        if not nxt:
            break
        ensure(nxt)

    problems = []
    for f, args, path, _ in resolved:
        code, text = helps[path]
        where = f"{f}: `{PROG} {' '.join(args)}`"
        if code != 0:
            problems.append(f"{where}: `{PROG} {' '.join(path)} --help` exited {code}: {text[-300:]}")
            continue
        if not path and args and not args[0].startswith("-"):
            problems.append(f"{where}: {args[0]!r} is not a command of {PROG} (commands: {sorted(subcommands(text))})")
            continue
        for flag in sorted(flags_of(args)):
            if flag in ("--help",):
                continue
            if not re.search(rf"(?<![\w-]){re.escape(flag)}(?![\w-])", text):
                problems.append(f"{where}: {flag} is not an option of `{PROG} {' '.join(path)}`")
    assert not problems, "the docs show commands the CLI does not have:\n" + "\n".join(problems)
    assert len(helps) <= 20, f"{len(helps)} --help calls: expected one per distinct command path"


def test_flag_extraction():
    text = "\n".join([
        "```bash",
        ".venv/bin/lejepa-domains pretrain specimens --out runs/x && lejepa-domains eval specimens \\",
        "    --baseline random   # a comment --not-a-flag",
        "nice lejepa-domains recipes new tiles --data 'shards/train-{000000..000009}.tar' --minutes=2.5",
        "```",
        "outside a block: lejepa-domains pretrain --ignored",
    ])
    got = shown_commands(text)
    assert got == [["pretrain", "specimens", "--out", "runs/x"], ["eval", "specimens", "--baseline", "random"],
                   ["recipes", "new", "tiles", "--data", "shards/train-{000000..000009}.tar", "--minutes=2.5"]]
    assert flags_of(got[2]) == {"--data", "--minutes"}
    assert subcommands("╭─ Commands ─╮\n│ new    Write a recipe │\n│        wrapped text │\n╰────╯") == {"new"}


def test_readme_is_short():
    n = len((ROOT / "README.md").read_text(encoding="utf-8").splitlines())
    assert n <= README_MAX_LINES, f"README.md has {n} lines; keep it <= {README_MAX_LINES} and move detail to docs/"


def test_readme_states_the_test_command():
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    assert "python -P -m pytest -q -p no:cacheprovider tests" in text
    assert "bash .ci/run" in text


def _mkdocs() -> str | None:
    missing = [m for m in ("mkdocs", "material", "mkdocstrings", "mkdocstrings_handlers.python")
               if _find(m) is None]
    if missing:
        pytest.skip(f"the docs extra is not installed (missing {', '.join(missing)}): pip install '.[docs]'")
    exe = Path(sys.executable).with_name("mkdocs")
    return str(exe) if exe.exists() else shutil.which("mkdocs")


def _find(module: str):
    try:
        return importlib.util.find_spec(module)
    except (ImportError, ValueError):
        return None


def test_mkdocs_build_strict(tmp_path):
    exe = _mkdocs()
    if exe is None:
        pytest.skip("mkdocs is installed but its console script is not on PATH")
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1", "NO_ALBUMENTATIONS_UPDATE": "1"}
    res = subprocess.run([exe, "build", "--strict", "-q", "-f", str(ROOT / "mkdocs.yml"), "-d", str(tmp_path / "site")],
                         cwd=tmp_path, capture_output=True, text=True, env=env, timeout=300)
    assert res.returncode == 0, f"mkdocs build --strict failed:\n{res.stdout[-3000:]}\n{res.stderr[-3000:]}"
    assert (tmp_path / "site" / "reference" / "cli" / "index.html").is_file()
    assert (tmp_path / "site" / "how-to" / "error-index" / "index.html").is_file()
