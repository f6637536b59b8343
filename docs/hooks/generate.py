"""MkDocs hook: pages generated at build time from the code, so they cannot drift from it.

* ``reference/cli.md``: every command, argument and option of the typer app (``lejepa_domains.cli.app``), walked
  through the click command tree typer builds (``typer.main.get_command``). Typer >= 0.26 bundles its own click, so
  the tree is read by attribute (``commands``, ``params``, ``opts``…), never by ``isinstance`` against ``click``.
* ``how-to/error-index.md``: every ``UserError(…)`` / ``DataError(…)`` / ``OfflineError(…)`` the package raises, found
  by parsing its source (nothing is imported or run), grouped by topic.
* ``reference/train-config-fields.md``: the fields of ``TrainConfig`` with their defaults and the comment beside each.

Nothing here reaches the network.
"""

from __future__ import annotations

import ast
import html
import importlib.util
import io
import os
import tokenize
from pathlib import Path

os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")

from mkdocs.structure.files import File  # noqa: E402

PROG = "lejepa-domains"
ERROR_KINDS = {
    "UserError": "input (flags, recipe, paths)",
    "DataError": "data (files, splits, labels, pixels)",
    "OfflineError": "network (hub, weights)",
}
# first matching prefix of the module path (relative to the package) → topic; the order is the page's order
TOPICS = [
    ("cli.py", "Command line"),
    ("recipe", "Recipes and recipe files"),
    ("data/shards.py", "Shards and streaming"),
    ("data/stream.py", "Shards and streaming"),
    ("recipe_tools/shard", "Shards and streaming"),
    ("data/hub.py", "Hugging Face hub and offline use"),
    ("data/", "Data: sources, files, images, labels"),
    ("runs/", "Run folders, locks and checkpoints"),
    ("train/launch.py", "Several processes and Slurm"),
    ("train/slurm.py", "Several processes and Slurm"),
    ("train/distributed.py", "Several processes and Slurm"),
    ("train/adapt.py", "Adapting a foundation model (--adapt)"),
    ("train/", "Pretraining"),
    ("durations.py", "Pretraining"),
    ("method/variants/", "Ablations and comparisons"),
    ("method/", "Pretraining"),
    ("foundation.py", "Foundation weights (--init, --weights, DINOv2/DINOv3)"),
    ("embeddings/", "Embeddings, search and outliers"),
    ("evaluate/", "Evaluation (eval)"),
    ("studies/", "Ablations and comparisons"),
    ("export/", "Export and the Hub"),
    ("ui/", "Command line"),
]
OTHER = "Other"


# ---------------------------------------------------------------------------------------------------- CLI reference
def _cmd_usage(path: str, cmd) -> str:
    words = [path]
    if getattr(cmd, "params", None) and any(_is_option(p) for p in cmd.params):
        words.append("[OPTIONS]")
    for p in getattr(cmd, "params", []):
        if not _is_option(p):
            name = (p.name or "ARG").upper()
            words.append(name if getattr(p, "required", False) else f"[{name}]")
    if getattr(cmd, "commands", None):
        words.append("[COMMAND [ARGS]...]" if getattr(cmd, "invoke_without_command", False) else "COMMAND [ARGS]...")
    return " ".join(words)


def _is_option(p) -> bool:
    return getattr(p, "param_type_name", "") == "option"


def _md_cell(text: str) -> str:
    return " ".join(str(text).split()).replace("|", "\\|")


def _type_name(p) -> str:
    """The value type of a parameter: click's ``p.type.name``, or the annotation typer (>= 0.26) records."""
    name = getattr(getattr(p, "type", None), "name", None)
    if name:
        return str(name).lower()
    ann = getattr(getattr(p, "type_descriptor", None), "annotation", None)
    text = str(ann) if getattr(ann, "__args__", None) else (getattr(ann, "__name__", None) or str(ann or ""))
    text = text.replace("typing.", "").replace("pathlib.", "")
    m = {"Path": "path", "PosixPath": "path", "str": "text", "int": "integer", "float": "number", "bool": "flag"}
    for inner in ("Optional[", "List[", "list["):
        if text.startswith(inner):
            text = text[len(inner):-1]
    return m.get(text, text)


def _param_row(p) -> str:
    opts = list(getattr(p, "opts", []) or []) + list(getattr(p, "secondary_opts", []) or [])
    names = " / ".join(f"`{o}`" for o in opts)
    kind = _type_name(p)
    if getattr(p, "is_flag", False):
        kind = "flag"
    if getattr(p, "multiple", False):
        kind += ", repeatable"
    default = getattr(p, "default", None)
    show = "" if default in (None, False, ()) or callable(default) else f"`{default}`"
    return f"| {names} | {_md_cell(kind)} | {show} | {_md_cell(getattr(p, 'help', '') or '')} |"


def _command_md(path: str, cmd, level: int) -> list[str]:
    out = [f"{'#' * level} `{path}`", ""]
    if getattr(cmd, "help", None):
        out += [" ".join(cmd.help.split()), ""]
    out += ["```text", _cmd_usage(path, cmd), "```", ""]
    args = [p for p in getattr(cmd, "params", []) if not _is_option(p)]
    opts = [p for p in getattr(cmd, "params", []) if _is_option(p)]
    if args:
        out += ["| argument | help |", "|---|---|"]
        for p in args:
            req = " (required)" if getattr(p, "required", False) else ""
            out.append(f"| `{(p.name or '').upper()}`{req} | {_md_cell(getattr(p, 'help', '') or '')} |")
        out.append("")
    if opts:
        out += ["| option | type | default | help |", "|---|---|---|---|"]
        out += [_param_row(p) for p in opts]
        out.append("")
    for name, sub in sorted((getattr(cmd, "commands", None) or {}).items()):
        out += _command_md(f"{path} {name}", sub, min(level + 1, 4))
    return out


def cli_reference() -> str:
    import typer.main

    from lejepa_domains.cli import app

    root = typer.main.get_command(app)
    lines = [
        "# Command line",
        "",
        "<!-- generated at build time by docs/hooks/generate.py from lejepa_domains.cli.app; do not edit -->",
        "",
        "Generated from the typer app at build time, so it is always the installed version's. "
        f"`{PROG} COMMAND --help` prints the same in the terminal; `python -m lejepa_domains` is the same CLI.",
        "",
        "Every command reports bad input as **one** `error:` line and exit code 2, without a traceback; "
        "see [Troubleshooting](../how-to/troubleshooting.md) and the [error index](../how-to/error-index.md).",
        "",
    ]
    root_opts = [p for p in getattr(root, "params", []) if _is_option(p)]
    if root_opts:
        lines += ["| global option | type | default | help |", "|---|---|---|---|"]
        lines += [_param_row(p) for p in root_opts] + [""]
    for name, cmd in (getattr(root, "commands", None) or {}).items():
        lines += _command_md(f"{PROG} {name}", cmd, 2)
    return "\n".join(lines) + "\n"


# ------------------------------------------------------------------------------------------------------ error index
def _package_dir() -> Path:
    spec = importlib.util.find_spec("lejepa_domains")
    if spec is None or not spec.origin:
        raise RuntimeError("lejepa_domains is not importable: install the project (pip install '.[docs]')")
    return Path(spec.origin).parent


def _placeholder(node: ast.AST) -> str:
    text = ast.unparse(node)
    return "{" + text + "}" if len(text) <= 28 and "(" not in text else "{…}"


def _render(node: ast.AST) -> str:
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return node.value
    if isinstance(node, ast.JoinedStr):
        return "".join(v.value if isinstance(v, ast.Constant) else _placeholder(v.value) for v in node.values)
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Add):
        return _render(node.left) + _render(node.right)
    return _placeholder(node)


def error_classes(trees: dict[str, ast.AST]) -> dict[str, str]:
    """Every exception class of the package that derives from one of ERROR_KINDS → that base kind."""
    kinds = {k: k for k in ERROR_KINDS}
    changed = True
    while changed:
        changed = False
        for tree in trees.values():
            for node in ast.walk(tree):
                if isinstance(node, ast.ClassDef) and node.name not in kinds:
                    for b in node.bases:
                        base = b.id if isinstance(b, ast.Name) else b.attr if isinstance(b, ast.Attribute) else None
                        if base in kinds:
                            kinds[node.name] = kinds[base]
                            changed = True
                            break
    return kinds


def raised_errors(pkg: Path) -> list[tuple[str, int, str, str]]:
    """(module path, line, exception class, message with {placeholders}) for every raise site."""
    rows = []
    trees = {p.relative_to(pkg).as_posix(): ast.parse(p.read_text(encoding="utf-8")) for p in sorted(pkg.rglob("*.py"))}
    kinds = error_classes(trees)
    for rel, tree in trees.items():
        if rel == "errors.py":
            continue
        for node in ast.walk(tree):
            if not isinstance(node, ast.Call):
                continue
            f = node.func
            name = f.id if isinstance(f, ast.Name) else f.attr if isinstance(f, ast.Attribute) else None
            if name in kinds:
                msg = _render(node.args[0]) if node.args else "(message built elsewhere)"
                kind = name if name == kinds[name] else f"{name} ({kinds[name]})"
                rows.append((rel, node.lineno, kind, " ".join(msg.split())))
    return rows


def _topic(rel: str) -> str:
    for prefix, topic in TOPICS:
        if rel.startswith(prefix):
            return topic
    return OTHER


def _code(text: str) -> str:
    esc = html.escape(text, quote=False)
    for ch, ent in (("|", "&#124;"), ("*", "&#42;"), ("_", "&#95;"), ("`", "&#96;"), ("[", "&#91;"),
                    ("]", "&#93;"), ("\\", "&#92;"), ("{", "&#123;"), ("}", "&#125;")):
        esc = esc.replace(ch, ent)
    return f"<code>{esc}</code>"


def error_index() -> str:
    pkg = _package_dir()
    rows = raised_errors(pkg)
    order = []
    for _, topic in TOPICS:
        if topic not in order:
            order.append(topic)
    order.append(OTHER)
    groups: dict[str, list] = {t: [] for t in order}
    for r in rows:
        groups[_topic(r[0])].append(r)
    lines = [
        "# Error index",
        "",
        "<!-- generated at build time by docs/hooks/generate.py from the package source; do not edit -->",
        "",
        f"Every error the package raises on purpose: **{len(rows)}** raise sites, read from the source of the installed "
        "package when this site was built (so the list cannot go stale). The CLI prints each as one line "
        "`error: MESSAGE` and exits with code 2, without a traceback; the Python API raises the exception "
        "(`lejepa_domains.UserError` or its subclasses `DataError` and `OfflineError`). `{…}` marks a value filled in "
        "at run time (a path, a recipe name, a number). Most messages already say what to do after the `;`.",
        "",
        "What each kind means:",
        "",
        "| kind | meaning | what to do in general |",
        "|---|---|---|",
        "| `UserError` | a flag, an argument, a recipe file or an output path is not what the command needs | read the "
        "line: it names the flag or file and what was expected; `lejepa-domains COMMAND --help` lists the flags |",
        "| `DataError` | the data does not match the recipe, or a file is missing, unreadable or corrupt | the line "
        "names the file and row; check the data (or `--skip-bad-samples` for undecodable images) and "
        "`lejepa-domains recipes check FILE` |",
        "| `OfflineError` | something needed the Hugging Face hub and it was not reachable nor cached | pass a local "
        "copy (`--data PATH`, `--weights FILE`) or run once on a connected machine to fill the cache |",
        "",
        "The most common of these, with their meaning and fix spelled out, are on "
        "[Troubleshooting](troubleshooting.md). Command-line usage errors (unknown flag, missing value) come from the "
        "argument parser and are described there too.",
        "",
    ]
    for topic in order:
        items = groups[topic]
        if not items:
            continue
        lines += [f"## {topic}", "", "| message (after `error:`) | kind | raised in |", "|---|---|---|"]
        for rel, lineno, kind, msg in sorted(items, key=lambda r: (r[0], r[1])):
            lines.append(f"| {_code(msg)} | `{kind}` | `{rel}` |")
        lines.append("")
    return "\n".join(lines) + "\n"


# ------------------------------------------------------------------------------------------- TrainConfig field table
def train_config_fields() -> str:
    src = (_package_dir() / "recipe.py").read_text(encoding="utf-8")
    tree = ast.parse(src)
    comments = {}
    for tok in tokenize.generate_tokens(io.StringIO(src).readline):
        if tok.type == tokenize.COMMENT:
            comments[tok.start[0]] = tok.string.lstrip("#").strip()
    cls = next((n for n in ast.walk(tree) if isinstance(n, ast.ClassDef) and n.name == "TrainConfig"), None)
    lines = [
        "# TrainConfig fields",
        "",
        "<!-- generated at build time by docs/hooks/generate.py from the TrainConfig class; do not edit -->",
        "",
        "Every field of `lejepa_domains.TrainConfig` (a recipe's `train=` defaults; `pretrain` flags and keyword "
        "arguments override them), its default and the note beside it in the source.",
        "",
        "| field | type | default | note |",
        "|---|---|---|---|",
    ]
    if cls is None:
        return "\n".join(lines + ["", "*(TrainConfig not found in recipe.py)*"]) + "\n"
    for node in cls.body:
        if isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            default = ast.unparse(node.value) if node.value is not None else ""
            note = comments.get(node.lineno, "")
            lines.append(f"| `{node.target.id}` | `{_md_cell(ast.unparse(node.annotation))}` | `{_md_cell(default)}` "
                         f"| {_md_cell(note)} |")
    return "\n".join(lines) + "\n"


# ------------------------------------------------------------------------------------------------------------- hook
PAGES = {
    "reference/cli.md": cli_reference,
    "how-to/error-index.md": error_index,
    "reference/train-config-fields.md": train_config_fields,
}


def on_files(files, config):
    for uri, make in PAGES.items():
        existing = files.get_file_from_path(uri)
        if existing is not None:
            files.remove(existing)
        files.append(File.generated(config, uri, content=make()))
    return files
