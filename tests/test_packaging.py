"""A plain (non-editable) `pip install .` ships every module, the built-in recipes and the data cards, and the suite
imports that installed copy. (tests/test_installed.py builds the wheel and runs the CLI from a fresh venv.)"""

import importlib.metadata as md
from pathlib import Path

import pytest
from conftest import TEST_CHECKOUT, import_problem

import lejepa_domains
from lejepa_domains.recipe import list_recipes

ROOT = Path(__file__).resolve().parents[1]


def expected_files() -> set[str]:
    """What an installed lejepa_domains must contain, from the source tree: every module of the package (any depth),
    every built-in recipe and every data card, at their installed paths."""
    files = {f"lejepa_domains/{p.relative_to(ROOT / 'lejepa_domains').as_posix()}"
             for p in (ROOT / "lejepa_domains").rglob("*.py")}
    files |= {f"lejepa_domains/recipes/{p.name}" for p in (ROOT / "recipes").glob("*.py")}
    files |= {f"lejepa_domains/data_cards/{p.name}" for p in (ROOT / "data_cards").glob("*.md")}
    files |= {f"lejepa_domains/data_cards/{p.name}" for p in (ROOT / "data_cards").glob("*.py")}
    return files


def _owning_distribution():
    """The installed lejepa-domains distribution whose RECORD holds the lejepa_domains/__init__.py imported here."""
    init = Path(lejepa_domains.__file__).resolve()
    for d in md.distributions():
        if (d.metadata["Name"] or "").lower() != "lejepa-domains" or not d.read_text("RECORD"):
            continue
        if any(str(f) == "lejepa_domains/__init__.py" and Path(d.locate_file(f)).resolve() == init
               for f in (d.files or [])):
            return d
    return None


def test_every_builtin_recipe_has_a_card_in_the_source_tree():
    names = {i.name for i in list_recipes()}
    assert {"specimens", "digits"} <= names
    for n in names:
        card = ROOT / "data_cards" / f"{n}.md"
        assert card.is_file(), f"recipe {n} has no data card"
        assert card.read_text().startswith("---\n"), f"{card} needs YAML front matter"


def test_suite_imports_the_installed_package_not_the_checkout():
    if TEST_CHECKOUT:
        pytest.skip("LEJEPA_TEST_CHECKOUT=1: testing the checkout on purpose")
    assert import_problem() is None
    assert not Path(lejepa_domains.__file__).resolve().is_relative_to(ROOT / "lejepa_domains")


def test_installed_distribution_contains_recipes_and_cards():
    # the installed wheel's .dist-info (it has a RECORD) that owns the imported package; a build's
    # lejepa_domains.egg-info in the source tree has no RECORD, an editable install's RECORD has no lejepa_domains/
    dist = _owning_distribution()
    if dist is None:
        if TEST_CHECKOUT:
            pytest.skip("LEJEPA_TEST_CHECKOUT=1: the checkout is not an installed distribution")
        pytest.fail(f"no installed lejepa-domains distribution owns {lejepa_domains.__file__} "
                    "(install with `pip install .`, not -e)")
    files = {str(f) for f in (dist.files or [])}
    for name in ("specimens", "digits"):
        assert f"lejepa_domains/recipes/{name}.py" in files
        assert f"lejepa_domains/data_cards/{name}.md" in files
    assert "lejepa_domains/method/sigreg.py" in files
    missing = sorted(expected_files() - files)
    assert not missing, f"the installed distribution lacks {missing}"
    assert not [f for f in files if f.startswith(("tests/", "benchmarks/"))]
