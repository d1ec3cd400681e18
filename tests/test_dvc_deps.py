"""dvc.yaml's deps and params cover what each stage really runs and reads.

For every DVC stage of the stage table, the code it runs is found from ``run`` in
``pipelines/<stage>.py`` by static analysis: the imports of that function and of the
module-level functions of its module it calls,
then every import (module level and inside functions) of each waferflow module reached. The
params it reads are the attribute chains on its ``params`` argument, followed into the
functions ``params`` is handed to and into ``Params`` methods. A module outside every dep path,
or a params section or key outside the stage's ``params:`` list, fails the test: a change there
would not re-run the stage (a silent reproducibility hole).
"""

from __future__ import annotations

import ast
from functools import lru_cache
from pathlib import Path

import pytest
import yaml

from tests.conftest import PROJECT_ROOT
from waferflow.stages import STAGES

SRC = PROJECT_ROOT / "src"
DVC_STAGES = [s.name for s in STAGES if s.dvc]
# Read for the record only (every parameter is logged to the MLflow run); no output depends on them.
RECORD_ONLY = {"log_params_record"}
ALIASES = {"validate_": "validate"}  # Params attribute -> params.yaml key


def _module_file(name: str) -> Path | None:
    base = SRC / Path(*name.split("."))
    for path in (base.with_suffix(".py"), base / "__init__.py"):
        if path.is_file():
            return path
    return None


def _stage_file(stage: str) -> Path:
    return PROJECT_ROOT / "pipelines" / f"{stage}.py"


@lru_cache(maxsize=None)
def _tree(path: Path) -> ast.Module:
    return ast.parse(path.read_text(), str(path))


def _imports(node: ast.AST) -> dict[str, str]:
    """Local name -> module for every waferflow import under ``node`` (``from m import f``: f -> m.f or m)."""
    found = {}
    for sub in ast.walk(node):
        if isinstance(sub, ast.ImportFrom) and sub.module and sub.module.startswith("waferflow"):
            for alias in sub.names:
                full = f"{sub.module}.{alias.name}"
                found[alias.asname or alias.name] = full if _module_file(full) else sub.module
        elif isinstance(sub, ast.Import):
            for alias in sub.names:
                if alias.name.startswith("waferflow"):
                    found[alias.asname or alias.name] = alias.name
    return found


def _functions(tree: ast.Module) -> dict[str, ast.FunctionDef]:
    return {n.name: n for n in tree.body if isinstance(n, ast.FunctionDef)}


def _called_local(fn: ast.FunctionDef, local: dict[str, ast.FunctionDef]) -> set[str]:
    """Module-level functions of the same module that ``fn`` calls, transitively."""
    seen, todo = set(), [fn]
    while todo:
        for sub in ast.walk(todo.pop()):
            if (
                isinstance(sub, ast.Call)
                and isinstance(sub.func, ast.Name)
                and sub.func.id in local
                and sub.func.id not in seen
            ):
                seen.add(sub.func.id)
                todo.append(local[sub.func.id])
    return seen


def _config_modules(sections: set[str]) -> set[str]:
    """The modules defining the ``Params`` fields of ``sections`` (``train`` -> waferflow.training.config)."""
    tree = _tree(SRC / "waferflow/config.py")
    imports = _imports(tree)
    params_class = next(n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == "Params")
    found = set()
    for field in params_class.body:
        if isinstance(field, ast.AnnAssign) and ALIASES.get(field.target.id, field.target.id) in sections:
            type_name = ast.unparse(field.annotation)
            found.add(imports[type_name].rpartition(".")[0] if type_name in imports else "waferflow.config")
    return found


def stage_modules(stage: str) -> set[Path]:
    """Every waferflow source file whose code the stage's function can run.

    ``waferflow.config`` counts with the modules that define the params sections the stage reads
    (not every section's); a package ``__init__`` is followed but not counted when it only
    re-exports (its code is its modules')."""
    fn_name = "run"
    root = _stage_file(stage)
    tree = _tree(root)
    local = _functions(tree)
    names = {fn_name} | _called_local(local[fn_name], local)
    used = {sub.id for n in names for sub in ast.walk(local[n]) if isinstance(sub, ast.Name)}
    module_level = _imports(ast.Module([n for n in tree.body if not isinstance(n, ast.FunctionDef)], []))
    todo = {m for name, m in module_level.items() if name in used}  # a module shared by stages: this one's part
    todo |= {m for n in names for m in _imports(local[n]).values()}
    todo |= _config_modules({key.split(".")[0] for key in stage_params(stage)})
    files, seen = {root}, {"waferflow.config"}
    files.add(SRC / "waferflow/config.py")
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        path = _module_file(name)
        if path is None:
            continue
        parts = name.split(".")
        todo |= {".".join(parts[:i]) for i in range(2, len(parts))}  # importing a.b.c runs a.b first
        if path.name != "__init__.py" or _has_code(_tree(path)):
            files.add(path)
        todo |= set(_imports(_tree(path)).values())
    return files


def _has_code(tree: ast.Module) -> bool:
    """More than a docstring, imports and dunder names (``__all__``, ``__version__``)."""
    return any(
        not isinstance(n, (ast.Import, ast.ImportFrom, ast.Expr))
        and not (isinstance(n, ast.Assign) and all(ast.unparse(t).startswith("__") for t in n.targets))
        for n in tree.body
    )


def _chains(fn: ast.FunctionDef, param: str, path: Path, seen: set) -> set[str]:
    """Dotted params.yaml keys read through ``param`` in ``fn``, following calls that pass it on."""
    keys: set[str] = set()
    imports = _imports(_tree(path))
    imports.update(_imports(fn))
    local = _functions(_tree(path))
    for sub in ast.walk(fn):
        if isinstance(sub, ast.Attribute) and isinstance(sub.value, ast.Name) and sub.value.id == param:
            section, parent = ALIASES.get(sub.attr, sub.attr), sub._parent  # type: ignore[attr-defined]
            if isinstance(parent, ast.Attribute) and not _called(parent):
                keys.add(f"{section}.{parent.attr}")  # params.evaluate.real_data_dir
            else:
                keys.add(section)  # a whole section handed on, or a method of it or of Params
        if isinstance(sub, ast.Call):
            args = [a for a in sub.args] + [k.value for k in sub.keywords]
            if not any(isinstance(a, ast.Name) and a.id == param for a in args):
                continue
            callee = sub.func.id if isinstance(sub.func, ast.Name) else None
            if callee in RECORD_ONLY or callee is None:
                continue
            target_path, target_fn = path, local.get(callee)
            if target_fn is None and callee in imports:
                module, _, fname = imports[callee].rpartition(".")
                target_path = _module_file(module)
                target_fn = _functions(_tree(target_path)).get(fname) if target_path else None
            if target_fn is None:
                pytest.fail(f"{path.name}: params handed to {callee}, which this test cannot follow")
            position = next(i for i, a in enumerate(args) if isinstance(a, ast.Name) and a.id == param)
            callee_param = (
                target_fn.args.args[position].arg
                if position < len(sub.args)
                else sub.keywords[position - len(sub.args)].arg
            )
            if (target_path, target_fn.name, callee_param) not in seen:
                seen.add((target_path, target_fn.name, callee_param))
                _link_parents(target_fn)
                keys |= _chains(target_fn, callee_param, target_path, seen)
    return keys


def _called(node: ast.AST) -> bool:
    parent = getattr(node, "_parent", None)
    return isinstance(parent, ast.Call) and parent.func is node


def _link_parents(node: ast.AST) -> None:
    for parent in ast.walk(node):
        for child in ast.iter_child_nodes(parent):
            child._parent = parent  # type: ignore[attr-defined]


def stage_params(stage: str) -> set[str]:
    path = _stage_file(stage)
    fn = _functions(_tree(path))["run"]
    _link_parents(fn)
    keys = _chains(fn, fn.args.args[0].arg, path, set())
    config = SRC / "waferflow/config.py"
    params_class = next(n for n in _tree(config).body if isinstance(n, ast.ClassDef) and n.name == "Params")
    for method in (n for n in params_class.body if isinstance(n, ast.FunctionDef)):
        if method.name in keys:  # a Params method: the sections it reads through self
            keys.discard(method.name)
            _link_parents(method)
            keys |= _chains(method, "self", config, set())
    return keys


def _dvc_stages() -> dict:
    return yaml.safe_load((PROJECT_ROOT / "dvc.yaml").read_text())["stages"]


@pytest.mark.parametrize("stage", DVC_STAGES)
def test_dvc_deps_cover_every_module_the_stage_runs(stage):
    deps = [PROJECT_ROOT / d for d in _dvc_stages()[stage]["deps"]]
    missing = sorted(
        str(p.relative_to(PROJECT_ROOT))
        for p in stage_modules(stage)
        if not any(p == d or d in p.parents for d in deps)
    )
    assert not missing, (
        f"dvc.yaml stage {stage!r} runs code outside its deps: {missing}; "
        "`python -m tests.test_dvc_deps` rewrites the code deps"
    )


@pytest.mark.parametrize("stage", DVC_STAGES)
def test_dvc_params_cover_every_key_the_stage_reads(stage):
    listed = [next(iter(p)) if isinstance(p, dict) else p for p in _dvc_stages()[stage].get("params", [])]
    read = stage_params(stage)
    missing = sorted(k for k in read if not any(k == p or k.startswith(p + ".") for p in listed))
    assert not missing, f"dvc.yaml stage {stage!r} reads params outside its params list: {missing}"


def write_code_deps(dvc_yaml: Path = PROJECT_ROOT / "dvc.yaml") -> None:
    """Rewrite each stage's ``src/`` deps in ``dvc.yaml`` from the analysis (a package directory
    where the stage runs all of it); the other deps (pipelines, data) are kept as written."""
    import re

    text = dvc_yaml.read_text()
    for stage in DVC_STAGES:
        files = {f for f in stage_modules(stage) if SRC in f.parents}  # pipelines/<stage>.py is kept as written
        dirs = sorted(
            {p for f in files for p in f.parents if SRC / "waferflow" in p.parents}, key=lambda d: len(d.parts)
        )
        whole: list[Path] = []
        for d in dirs:
            if not any(w == d or w in d.parents for w in whole) and all(
                p in files or (p.name == "__init__.py" and not _has_code(_tree(p)))
                for p in d.rglob("*.py")
                if "__pycache__" not in p.parts
            ):
                whole.append(d)
        deps = sorted({str(next((w for w in whole if w in f.parents), f).relative_to(PROJECT_ROOT)) for f in files})
        match = re.search(rf"\n  {stage}:\n    cmd: [^\n]*\n    deps:\n((?:      - [^\n]*\n)+)", text)
        lines = match.group(1).splitlines(keepends=True)
        kept = [line for line in lines if not line.strip().startswith("- src/")]
        block = "".join(kept[:1] + [f"      - {d}\n" for d in deps] + kept[1:])  # pipelines/<stage>.py first
        text = text[: match.start(1)] + block + text[match.end(1) :]
    dvc_yaml.write_text(text)


if __name__ == "__main__":  # python -m tests.test_dvc_deps: bring dvc.yaml's code deps up to date
    write_code_deps()
