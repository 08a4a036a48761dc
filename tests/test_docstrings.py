"""Every public function, method, property and record of the domain layer has a docstring.

The domain packages are those of tests/test_conventions.py. For each module found by
``pkgutil.walk_packages`` under them, the public API is: module-level functions and classes
defined there, their public methods (static and class methods included), their properties,
and an explicit ``__init__`` (documented in the method or in the class docstring).
A function or method with parameters (other than ``self``/``cls``) also has a numpydoc
``Parameters`` section, and one annotated to return a value a ``Returns`` (or ``Yields``)
section; properties are documented like attributes (numpydoc), with a docstring only.
"""

from __future__ import annotations

import importlib
import inspect
import pkgutil
import re
from collections.abc import Iterator

import pytest
from test_conventions import DOMAIN_PACKAGES

PARAMETERS = re.compile(r"^\s*Parameters\s*\n\s*-{3,}\s*$", re.MULTILINE)
RETURNS = re.compile(r"^\s*(?:Returns|Yields)\s*\n\s*-{3,}\s*$", re.MULTILINE)


def _modules(names=DOMAIN_PACKAGES) -> list[str]:
    found = []
    for name in names:
        mod = importlib.import_module(name)
        found.append(name)
        for info in pkgutil.walk_packages(getattr(mod, "__path__", []), prefix=name + "."):
            importlib.import_module(info.name)
            found.append(info.name)
    return found


def _callables(module) -> Iterator[tuple[str, object, type | None]]:
    """(qualified name, function, owning class or None) for the module's public API."""
    for name, obj in vars(module).items():
        if name.startswith("_") or getattr(obj, "__module__", None) != module.__name__:
            continue
        if inspect.isfunction(obj):
            yield f"{module.__name__}.{name}", obj, None
        elif inspect.isclass(obj):
            for attr, member in vars(obj).items():
                if isinstance(member, staticmethod | classmethod):
                    member = member.__func__
                if isinstance(member, property):
                    member = member.fget
                if not inspect.isfunction(member):
                    continue
                # generated constructors (dataclasses) have no source file
                if attr == "__init__" and not member.__code__.co_filename.startswith("<"):
                    yield f"{module.__name__}.{name}.__init__", member, obj
                elif not attr.startswith("_"):
                    yield f"{module.__name__}.{name}.{attr}", member, obj


def problems(module_names: list[str]) -> list[str]:
    """Every missing docstring or numpydoc section in the given modules, one line each."""
    out = []
    for mod_name in module_names:
        module = importlib.import_module(mod_name)
        for qual, func, owner in _callables(module):
            doc = inspect.getdoc(func) or ""
            if func.__name__ == "__init__":
                doc += inspect.getdoc(owner) or ""
            if not doc.strip():
                out.append(f"{qual}: no docstring")
                continue
            if owner is not None and isinstance(vars(owner).get(func.__name__), property):
                continue  # numpydoc: a property is documented like an attribute
            sig = inspect.signature(func)
            if any(p not in ("self", "cls") for p in sig.parameters) and not PARAMETERS.search(doc):
                out.append(f"{qual}: no Parameters section")
            ann = sig.return_annotation
            if (func.__name__ != "__init__" and ann is not inspect.Signature.empty
                    and ann not in (None, "None", type(None)) and not RETURNS.search(doc)):
                out.append(f"{qual}: no Returns section")
        for name, obj in vars(module).items():
            if (name.startswith("_") or not inspect.isclass(obj)
                    or getattr(obj, "__module__", None) != mod_name):
                continue
            if not (obj.__doc__ or "").strip():
                out.append(f"{mod_name}.{name}: class without a docstring")
    return out


def test_the_walk_finds_the_domain_layer():
    # a walk that silently found nothing would make the next test pass trivially
    assert len(_modules()) >= 80


def test_public_domain_api_is_documented():
    found = problems(_modules())
    assert not found, f"{len(found)} docstring problems:\n" + "\n".join(found)


@pytest.mark.parametrize("bad", ["function", "property", "method", "class", "Parameters",
                                 "Returns"])
def test_the_check_reports_each_kind_of_problem(bad, tmp_path, monkeypatch):
    """A throwaway module with exactly one defect of each kind is reported once."""
    src = {
        "function": "def f(x: int) -> int:\n    return x\n",
        "property": ('class C:\n    """A thing."""\n\n    @property\n'
                     "    def size(self) -> int:\n        return 1\n"),
        "method": ('class C:\n    """A thing."""\n\n    def size(self) -> int:\n'
                   "        return 1\n"),
        "class": "class C:\n    x: int = 1\n",
        "Parameters": 'def f(x: int) -> None:\n    """Check x."""\n',
        "Returns": ('def f() -> int:\n    """One."""\n    return 1\n'),
    }[bad]
    name = "atp_docstring_probe_" + bad.replace(" ", "_").lower()
    (tmp_path / f"{name}.py").write_text(src)
    monkeypatch.syspath_prepend(str(tmp_path))
    found = problems([name])
    assert len(found) == 1, found
    want = {"class": "without a docstring", "Parameters": "no Parameters section",
            "Returns": "no Returns section"}.get(bad, "no docstring")
    assert want in found[0], found
