"""Which argv run warm, which environments share a zygote, and what a target preloads (pure)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from localpachd.warm.scan import imports_in_source, local_file, preload_names
from localpachd.warm.target import Target, classify, startup_env, warm_blocker

PY = sys.executable


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        ((PY, "-m", "stages.train", "--c", "/c"), Target("module", "stages.train", ("--c", "/c"))),
        ((PY, "-m", "pkg"), Target("module", "pkg", ())),
        ((PY, "-m"), None),
        ((PY, "-m", "not-a-module"), None),
        ((PY, "-u", "-m", "x"), None),  # interpreter options: run as a plain subprocess
        ((PY, "-c", "print(1)"), None),
        (("python3", "-m", "x"), None),  # the worker rewrites python3 before the runtime sees it
        (("sh", "-c", "cp a b"), None),
        ((PY,), None),
    ],
)
def test_classify_module_forms(argv: tuple[str, ...], expected: Target | None) -> None:
    assert classify(argv, "/") == expected


def test_classify_scripts_only_when_the_file_exists(tmp_path: Path) -> None:
    (tmp_path / "run.py").write_text("print(1)\n")
    assert classify((PY, "run.py", "a"), str(tmp_path)) == Target("script", "run.py", ("a",))
    absolute = str(tmp_path / "run.py")
    assert classify((PY, absolute), "/") == Target("script", absolute, ())
    assert classify((PY, "missing.py"), str(tmp_path)) is None  # python reports that itself
    assert classify((PY, "run.txt"), str(tmp_path)) is None


def test_startup_env_ignores_per_datum_variables() -> None:
    a = {"PATH": "/bin", "PYTHONPATH": "/x", "c": "/pfs/c", "PACH_DATUM_ID": "1", "LANG": "C"}
    b = {"PATH": "/bin", "PYTHONPATH": "/x", "c": "/pfs/c2", "PACH_DATUM_ID": "2", "LANG": "C"}
    expected = (("LANG", "C"), ("PATH", "/bin"), ("PYTHONPATH", "/x"))
    assert startup_env(a) == startup_env(b) == expected
    assert startup_env({**a, "OMP_NUM_THREADS": "1"}) != startup_env(a)
    assert startup_env({**a, "PYTHONHASHSEED": "0"}) != startup_env(a)


def test_warm_blockers() -> None:
    assert warm_blocker({"PYTHONPATH": "/abs:/other"}) is None
    assert "relative" in (warm_blocker({"PYTHONPATH": "lib"}) or "")
    assert warm_blocker({"PYTHONINSPECT": "1"}) == "PYTHONINSPECT is set"


def test_imports_in_source_finds_all_imports_including_lazy_and_relative() -> None:
    source = (
        "import numpy as np, os.path\n"
        "from sklearn.svm import SVC\n"
        "from . import common\n"
        "from .util import helper\n"
        "from x import *\n"
        "def main():\n    import pandas\n"
    )
    assert imports_in_source(source, "stages") == [
        "numpy", "os.path", "sklearn.svm", "sklearn.svm.SVC", "stages", "stages.common",
        "stages.util", "stages.util.helper", "x", "pandas",
    ]
    assert "stages.common" not in imports_in_source(source, None)
    assert imports_in_source("def (:", None) == []


def test_preload_reads_local_modules_instead_of_importing_them(tmp_path: Path) -> None:
    (tmp_path / "helper.py").write_text("import pandas\nfrom localpkg import thing\n")
    (tmp_path / "localpkg").mkdir()
    (tmp_path / "localpkg" / "__init__.py").write_text("import scipy\n")
    assert local_file("helper", str(tmp_path)) == str(tmp_path / "helper.py")
    assert local_file("numpy", str(tmp_path)) is None
    names = preload_names(["numpy", "helper"], str(tmp_path))
    assert names == ["numpy", "pandas", "scipy"]
    assert preload_names(["helper"], None) == ["helper"]
