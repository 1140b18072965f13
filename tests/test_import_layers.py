"""Dependencies point one way (DESIGN.md §2): every ``dysen`` import, lazy ones included, goes down the layers.

The layers, lowest first; a module may import its own top-level package and any package of a lower layer,
nothing of its own layer's other packages or above::

    errors, atomic                                 foundation
    run_folder                                     resumable jobs' saved settings (on ``atomic``)
    dysen (the root package)                       light: the version and ``DysenError``
    dsg                                            the data model (pure Python: never torch)
    world, encoders                                Dynamic Shapes world model (numpy only); pretrained text encoders
    planner                                        Dysen: prompt -> DSG
    models, diffusion                              networks; schedules, losses, guidance, the sampler
    backbones                                      pretrained denoisers from local diffusers folders
    config                                         composes the model, diffusion and planner configs
    pipeline, backbone_pipeline                    inference: plan -> encode -> sample -> decode (a backbone's too)
    data                                           video I/O, Dynamic Shapes generator, datasets, shards
    annotate, train, eval, convert                 gold DSG tools; training; evaluation; checkpoint converters
    web                                            the Gradio demo
    cli                                            ``dysen <subcommand>`` (``dysen demo`` starts the web app)

This refines the diagram ``dsg, world, encoders <- planner <- models/diffusion <- backbones <- pipeline <-
data/annotate/train/eval <- cli/web``: ``world`` speaks ``dsg`` (its gold DSGs), ``config`` sits between the
networks it composes and the pipeline that reads it, ``data`` is read by the three tools above it, and ``cli``
starts ``web``. Every ``import``/``from … import`` of a ``dysen`` module counts, at module level, inside
functions or under ``TYPE_CHECKING``; so does ``importlib.import_module("dysen…")`` with a literal name.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src" / "dysen"

FOUNDATION = "dysen"
"""The layer name of the root package itself (``dysen/__init__.py``: the version and ``DysenError``)."""

LAYERS: tuple[frozenset[str], ...] = tuple(
    frozenset(layer)
    for layer in (
        {"errors", "atomic"},
        {"run_folder"},  # resumable jobs' saved settings (training, the RL selector, latent caches)
        {FOUNDATION},
        {"dsg"},
        {"world", "encoders"},
        {"planner"},
        {"models", "diffusion"},
        {"backbones"},
        {"config"},
        {"pipeline", "backbone_pipeline"},
        {"data"},
        {"annotate", "train", "eval", "convert"},
        {"web"},
        {"cli"},
    )
)

ALLOWED: dict[tuple[str, str], str] = {}
"""(importing module, imported module) -> why this upward or sideways import must stay. Empty: none must."""

NO_TORCH = ("dsg", "world")
"""Packages that never import torch (DESIGN.md §2: ``dsg`` is pure Python, ``world`` numpy only)."""


@dataclass(frozen=True)
class Import:
    """One import statement of a ``dysen`` module: who, what, and where."""

    importer: str
    imported: str
    path: Path
    line: int

    def __str__(self) -> str:
        return f"{self.path}:{self.line}: {self.importer} imports {self.imported}"


def module_name(path: Path, root: Path) -> str:
    """``root/dsg/io.py`` -> ``dysen.dsg.io``; a package's ``__init__.py`` is the package."""
    parts = path.relative_to(root.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def is_module(name: str, root: Path) -> bool:
    """Whether ``name`` (``dysen.…``) is a module or package in the tree under ``root``."""
    relative = Path(*name.split(".")[1:]) if "." in name else Path()
    return (root / relative).with_suffix(".py").is_file() or (root / relative / "__init__.py").is_file()


def imports_of(path: Path, root: Path) -> list[Import]:
    """Every import in ``path`` (any depth: module level, functions, ``TYPE_CHECKING``), as full module names."""
    importer = module_name(path, root)
    package = importer if path.name == "__init__.py" else importer.rpartition(".")[0]
    found: list[tuple[str, int]] = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            found += [(alias.name, node.lineno) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: resolve against the importing package
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, *([base] if base else [])])
            for alias in node.names:  # `from dysen import annotate` imports the module dysen.annotate
                child = f"{base}.{alias.name}"
                found.append((child if child.startswith("dysen.") and is_module(child, root) else base, node.lineno))
        elif (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and node.func.attr == "import_module"
            and node.args
            and isinstance(node.args[0], ast.Constant)
            and isinstance(node.args[0].value, str)
        ):
            found.append((node.args[0].value, node.lineno))
    return [Import(importer, name, path, line) for name, line in found]


def package_of(module: str) -> str:
    """The top-level package under ``dysen`` (``dysen.dsg.io`` -> ``dsg``); the root itself is the foundation."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else FOUNDATION


def layer_of(package: str) -> int:
    for index, layer in enumerate(LAYERS):
        if package in layer:
            return index
    raise AssertionError(f"dysen.{package} is in no layer: add it to LAYERS in {Path(__file__).name}")


def layer_violations(root: Path, allowed: dict[tuple[str, str], str] = ALLOWED) -> list[Import]:
    """Imports of ``dysen`` modules that go sideways or up a layer, minus the ``allowed`` pairs."""
    bad = []
    for path in sorted(root.rglob("*.py")):
        for imp in imports_of(path, root):
            if imp.imported != "dysen" and not imp.imported.startswith("dysen."):
                continue
            here, there = package_of(imp.importer), package_of(imp.imported)
            if here == there or (imp.importer, imp.imported) in allowed:
                continue
            if layer_of(there) >= layer_of(here):
                bad.append(imp)
    return bad


def torch_imports(root: Path, packages: tuple[str, ...] = NO_TORCH) -> list[Import]:
    """Imports of torch (or any ``torch.*``) anywhere in ``packages``."""
    return [
        imp
        for package in packages
        for path in sorted((root / package).rglob("*.py"))
        for imp in imports_of(path, root)
        if imp.imported == "torch" or imp.imported.startswith("torch.")
    ]


# -- the real tree -------------------------------------------------------------------------------


def test_every_package_is_in_a_layer() -> None:
    packages = {package_of(module_name(path, SRC)) for path in SRC.rglob("*.py")}
    for package in packages:
        layer_of(package)


def test_dysen_imports_point_down_the_layers() -> None:
    bad = layer_violations(SRC)
    advice = "imports against the layers (move the helper down, or list the pair in ALLOWED with a reason)"
    assert not bad, advice + ":\n" + "\n".join(map(str, bad))


def test_allowed_exceptions_are_still_needed() -> None:
    present = {(imp.importer, imp.imported) for path in SRC.rglob("*.py") for imp in imports_of(path, SRC)}
    stale = [pair for pair in ALLOWED if pair not in present]
    assert not stale, f"ALLOWED lists imports that no longer exist; remove them: {stale}"


def test_dsg_and_world_never_import_torch() -> None:
    assert not torch_imports(SRC), "\n".join(map(str, torch_imports(SRC)))
    modules = sorted(module_name(p, SRC) for package in NO_TORCH for p in (SRC / package).rglob("*.py"))
    code = (
        "import importlib, sys\n"
        f"for name in {modules!r}: importlib.import_module(name)\n"
        "import dysen, dysen.encoders, dysen.planner\n"
        "heavy = sorted(m for m in ('torch', 'transformers', 'diffusers') if m in sys.modules)\n"
        "assert not heavy, heavy\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr


# -- the checker itself, on synthetic trees ------------------------------------------------------------------


def write_tree(root: Path, files: dict[str, str]) -> Path:
    """A fake ``dysen`` package under ``root`` from ``{relative path: source}``; returns its folder."""
    package = root / "dysen"
    for relative, source in {"__init__.py": "", **files}.items():
        path = package / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        for parent in path.relative_to(package).parents:
            (package / parent / "__init__.py").touch()
        path.write_text(source)
    return package


def test_checker_reports_an_upward_import_even_inside_a_function(tmp_path) -> None:
    root = write_tree(
        tmp_path,
        {
            "dsg/types.py": "from dysen.errors import DysenError\n",
            "errors.py": "class DysenError(Exception): ...\n",
            "pipeline.py": "from dysen.dsg.types import DysenError\n",
            "planner/layout.py": "def imagine():\n    from dysen.pipeline import run\n    return run\n",
        },
    )
    bad = layer_violations(root)
    assert [(imp.importer, imp.imported, imp.line) for imp in bad] == [("dysen.planner.layout", "dysen.pipeline", 2)]


def test_checker_reports_sideways_from_and_relative_imports(tmp_path) -> None:
    root = write_tree(
        tmp_path,
        {
            "models/unet.py": "from ..diffusion import guidance\n",
            "diffusion/guidance.py": "",
            "world/story.py": "from dysen import data\n",
            "data/__init__.py": "",
            "dsg/io.py": "import importlib\nimportlib.import_module('dysen.planner')\n",
            "planner/__init__.py": "",
        },
    )
    found = {(imp.importer, imp.imported) for imp in layer_violations(root)}
    assert found == {
        ("dysen.models.unet", "dysen.diffusion.guidance"),
        ("dysen.world.story", "dysen.data"),
        ("dysen.dsg.io", "dysen.planner"),
    }
    allowed = {("dysen.world.story", "dysen.data"): "a reason"}
    left = {(imp.importer, imp.imported) for imp in layer_violations(root, allowed)}
    assert ("dysen.world.story", "dysen.data") not in left and len(left) == 2


def test_checker_reports_torch_in_dsg_and_an_unknown_package(tmp_path) -> None:
    root = write_tree(tmp_path, {"dsg/render.py": "def draw():\n    import torch.nn\n", "misc/x.py": ""})
    assert [(imp.importer, imp.imported) for imp in torch_imports(root)] == [("dysen.dsg.render", "torch.nn")]
    try:
        layer_violations(write_tree(tmp_path / "b", {"misc/x.py": "from dysen.errors import E\n"}))
    except AssertionError as err:
        assert "dysen.misc is in no layer" in str(err)
    else:
        raise AssertionError("a package outside LAYERS must be reported")
