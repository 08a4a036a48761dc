"""Project conventions: the domain layer stays free of the DL stack, and lint is clean."""

from __future__ import annotations

import shutil
import subprocess
import sys

from conftest import REPO_ROOT

#: Packages of the pure numpy/scipy domain layer. New modules inside them are picked up.
DOMAIN_PACKAGES = ("atp.names", "atp.cases", "atp.io", "atp.dosimetry", "atp.dose",
                   "atp.planning", "atp.baselines", "atp.viz", "atp.sites", "atp.synth",
                   "atp.review", "atp.evaluation", "atp.sweep_summary", "atp.delivery")
FORBIDDEN = ("torch", "pytorch_lightning", "lightning", "hydra", "omegaconf", "monai",
             "torchio", "wandb")

_PROBE = """
import importlib, pkgutil, sys
imported = []
for name in {packages!r}:
    try:
        mod = importlib.import_module(name)
    except ModuleNotFoundError as exc:
        if exc.name == name:
            continue  # a layer package that does not exist yet
        raise
    imported.append(name)
    for info in pkgutil.walk_packages(getattr(mod, "__path__", []), prefix=name + "."):
        importlib.import_module(info.name)
        imported.append(info.name)
bad = sorted(m for m in sys.modules if m.split(".")[0] in {forbidden!r})
print(len(imported))
print(",".join(bad))
"""


def test_domain_layer_never_imports_the_dl_stack():
    code = _PROBE.format(packages=DOMAIN_PACKAGES, forbidden=FORBIDDEN)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         cwd=REPO_ROOT, check=True).stdout.splitlines()
    n_modules, bad = int(out[0]), out[1]
    assert n_modules >= 8, "the probe imported too few modules to mean anything"
    assert bad == "", f"domain layer imported: {bad}"


def test_ruff_is_clean():
    ruff = shutil.which("ruff", path=str(REPO_ROOT / ".venv" / "bin")) or shutil.which("ruff")
    assert ruff, "ruff is part of the test extras"
    res = subprocess.run([ruff, "check", "."], cwd=REPO_ROOT, capture_output=True, text=True)
    assert res.returncode == 0, res.stdout + res.stderr
