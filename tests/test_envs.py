"""The per-stage conda envs (envs/*.yaml) agree with pyproject.toml, so the two cannot drift.

Why: ``snakemake --use-conda`` / ``--sdm conda`` builds a stage's environment from its
``envs/*.yaml`` alone; pip users get ``pyproject.toml``. When the two disagree, one of them runs
code against versions nobody tested, or a stage fails only on the cluster with an ImportError.
Checked here:

1. every package of every env is a dependency of the project (declared in pyproject.toml, main
   or an extra, or required by one that is), under the conda<->PyPI names of ``CONDA_TO_PYPI``;
2. its version bounds lie within the project's (pyproject.toml + constraints.txt) and admit the
   version installed here (the one the tests ran against); python satisfies requires-python;
3. every rule runs its stage as ``{DUOPATH} <command>`` (``python -m duopath``: the activated
   env's interpreter on the workflow's own source) and has a ``conda:`` env holding what that
   job imports -- ``python -m duopath``'s start-up (``duopath.__main__`` and every module the
   CLI imports when it loads), then the command's own imports and all of the duopath modules
   they reach -- directly or as a dependency of a listed package, except the optional back-ends
   in ``OPTIONAL_IMPORTS``;
4. every env file is used by a rule and every ``conda:`` names an existing file.
"""

from __future__ import annotations

import ast
import importlib.util
import inspect
import re
import sys
import textwrap
from collections.abc import Callable
from functools import cache
from importlib import metadata
from pathlib import Path

import pytest
import yaml
from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet
from packaging.version import Version

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

REPO = Path(__file__).resolve().parents[1]
ENVS = sorted((REPO / "envs").glob("*.yaml"))

# conda-forge name -> PyPI name, where they differ. None: not a Python package of the project
# (the interpreter, the installer, CUDA metapackages) and checked separately or not at all.
CONDA_TO_PYPI: dict[str, str | None] = {
    "pytorch": "torch",
    "pytorch-gpu": "torch",
    "pytorch-cpu": "torch",
    "matplotlib-base": "matplotlib",
    "openslide-python": "openslide-python",
    "python": None,
    "pip": None,
    "cuda-version": None,
    "pytorch-cuda": None,
}

# Imports that only a non-default setting needs; they may be missing from a stage's env.
OPTIONAL_IMPORTS: dict[str, str] = {
    "tiatoolbox": "segmentation.method tiatoolbox_*; installed --no-deps by scripts/install.sh",
    "transformers": "encoders shipped in Hugging Face transformers format only",
}

# Import name -> distribution, for modules that may not be installed where the tests run.
IMPORT_TO_DIST_FALLBACK: dict[str, str] = {
    "PIL": "pillow",
    "yaml": "pyyaml",
    "skimage": "scikit-image",
    "sklearn": "scikit-learn",
    "sksurv": "scikit-survival",
    "openslide": "openslide-python",
    "tiatoolbox": "tiatoolbox",
}


def norm(name: str) -> str:
    """PEP 503 normalised project name."""
    return re.sub(r"[-_.]+", "-", name).lower()


# --- the project's side -----------------------------------------------------------------------


@cache
def pyproject() -> dict:
    return tomllib.loads((REPO / "pyproject.toml").read_text())


@cache
def declared() -> dict[str, SpecifierSet]:
    """Every dependency of pyproject.toml (main + extras), name -> specifier."""
    proj = pyproject()["project"]
    reqs = list(proj["dependencies"])
    for extra in proj.get("optional-dependencies", {}).values():
        reqs += extra
    out: dict[str, SpecifierSet] = {}
    for text in reqs:
        req = Requirement(text)
        out[norm(req.name)] = out.get(norm(req.name), SpecifierSet()) & req.specifier
    return out


@cache
def constraints() -> dict[str, SpecifierSet]:
    out: dict[str, SpecifierSet] = {}
    path = REPO / "constraints.txt"
    for line in path.read_text().splitlines() if path.exists() else []:
        line = line.split("#", 1)[0].strip()
        if line:
            req = Requirement(line)
            out[norm(req.name)] = req.specifier
    return out


def project_range(name: str) -> SpecifierSet:
    return declared().get(name, SpecifierSet()) & constraints().get(name, SpecifierSet())


def installed_version(name: str) -> Version | None:
    try:
        return Version(metadata.version(name))
    except metadata.PackageNotFoundError:
        return None


@cache
def requirements_of(name: str) -> frozenset[str]:
    """Names a distribution requires (installed metadata, no extras), transitively."""
    seen: set[str] = set()
    todo = [name]
    while todo:
        current = todo.pop()
        try:
            reqs = metadata.requires(current) or []
        except metadata.PackageNotFoundError:
            continue
        for text in reqs:
            req = Requirement(text)
            if req.marker is not None and not req.marker.evaluate({"extra": ""}):
                continue
            dep = norm(req.name)
            if dep not in seen:
                seen.add(dep)
                todo.append(dep)
    return frozenset(seen)


# --- the envs' side ---------------------------------------------------------------------------


def conda_spec(text: str) -> tuple[str, SpecifierSet]:
    """A conda match spec (``numpy>=1.26,<2``, ``python=3.11``, ``h5py``) as name + specifier."""
    m = re.fullmatch(r"\s*([A-Za-z0-9_.\-]+)\s*(.*?)\s*", text)
    if m is None:
        raise ValueError(f"cannot read conda spec {text!r}")
    name, spec = m.group(1), m.group(2).replace(" ", "")
    if re.fullmatch(r"=[^=].*", spec):  # conda's `=3.11` means 3.11.*
        spec = "==" + spec[1:].rstrip(".*") + ".*"
    return name, SpecifierSet(spec)


def env_packages(path: Path) -> dict[str, tuple[str, SpecifierSet]]:
    """PyPI name -> (name as written, specifier) for conda and pip entries of one env file."""
    doc = yaml.safe_load(path.read_text())
    out: dict[str, tuple[str, SpecifierSet]] = {}
    for dep in doc.get("dependencies", []):
        if isinstance(dep, dict):
            for text in dep.get("pip") or []:
                req = Requirement(text)
                out[norm(req.name)] = (req.name, req.specifier)
            continue
        name, spec = conda_spec(str(dep))
        pypi = CONDA_TO_PYPI.get(name.lower(), name)
        if pypi is not None:
            out[norm(pypi)] = (name, spec)
    return out


def env_python(path: Path) -> SpecifierSet | None:
    for dep in yaml.safe_load(path.read_text()).get("dependencies", []):
        if isinstance(dep, str) and conda_spec(dep)[0] == "python":
            return conda_spec(dep)[1]
    return None


def bounds(spec: SpecifierSet) -> tuple[Version | None, Version | None]:
    """Lowest and highest version a specifier admits (approximately: exclusivity ignored)."""
    lower: Version | None = None
    upper: Version | None = None

    def lo(v: Version) -> None:
        nonlocal lower
        lower = v if lower is None else max(lower, v)

    def hi(v: Version) -> None:
        nonlocal upper
        upper = v if upper is None else min(upper, v)

    for s in spec:
        if s.operator in (">=", ">"):
            lo(Version(s.version))
        elif s.operator in ("<", "<="):
            hi(Version(s.version))
        elif s.operator in ("==", "===", "~="):
            text = s.version.removesuffix(".*")
            v = Version(text)
            lo(v)
            if s.operator == "~=" or s.version.endswith(".*"):
                parts = list(v.release[: -1 if s.operator == "~=" else len(v.release)])
                parts[-1] += 1
                hi(Version(".".join(map(str, parts))))
            else:
                hi(v)
    return lower, upper


# --- the rules' side --------------------------------------------------------------------------


def rule_blocks() -> list[tuple[str, str, str]]:
    """(rule file, rule name, rule text) for every rule of rules/*.smk."""
    out = []
    for smk in sorted((REPO / "rules").glob("*.smk")):
        text = smk.read_text()
        starts = [m.start() for m in re.finditer(r"^\s*rule\b", text, flags=re.M)]
        for a, b in zip(starts, [*starts[1:], len(text)][: len(starts)], strict=True):
            block = text[a:b]
            named = re.search(r"rule\s+(\w+)\s*:", block) or re.search(r'name:\s*f?"([^"]+)"', block)
            out.append((smk.name, named.group(1) if named else "?", block))
    return out


def rules_with_envs() -> list[tuple[str, str, Path, str | None]]:
    """(rule file, rule name, env path, `duopath` sub-command) for every rule with `conda:`."""
    out = []
    for smk in sorted((REPO / "rules").glob("*.smk")):
        text = smk.read_text()
        starts = [m.start() for m in re.finditer(r"^\s*rule\b", text, flags=re.M)]
        for a, b in zip(starts, [*starts[1:], len(text)][: len(starts)], strict=True):
            block = text[a:b]
            conda = re.search(r'conda:\s*"([^"]+)"', block)
            if conda is None:
                continue
            named = re.search(r"rule\s+(\w+)\s*:", block) or re.search(r'name:\s*f?"([^"]+)"', block)
            shell = re.search(r'shell:\s*(?:[rf]?"(?:[^"]*?\s)?)?\{DUOPATH\}\s+([\w-]+)', block)
            env = (smk.parent / conda.group(1)).resolve()
            out.append((smk.name, named.group(1) if named else "?", env,
                        shell.group(1) if shell else None))
    return out


def cli_commands() -> dict[str, object]:
    """`duopath` sub-command name -> the Python function it runs."""
    from duopath.cli import app

    return {c.name or c.callback.__name__.replace("_", "-"): c.callback
            for c in app.registered_commands}


def _optional_nodes(tree: ast.AST) -> set[int]:
    """Nodes inside `try: ... except ImportError` or `if TYPE_CHECKING:` (not required imports)."""
    skip: set[int] = set()
    for node in ast.walk(tree):
        body: list[ast.stmt] = []
        if isinstance(node, ast.Try):
            caught = set()
            for h in node.handlers:
                types = h.type.elts if isinstance(h.type, ast.Tuple) else [h.type]
                caught |= {t.id for t in types if isinstance(t, ast.Name)}
            if caught & {"ImportError", "ModuleNotFoundError"}:
                body = node.body
        elif isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            body = node.body
        for stmt in body:
            skip |= {id(n) for n in ast.walk(stmt)}
    return skip


def _imports(tree: ast.AST, module: str, is_package: bool, top_level_only: bool) -> list[str]:
    skip = _optional_nodes(tree)
    nodes = tree.body if top_level_only else list(ast.walk(tree))
    out: list[str] = []
    for node in nodes:
        if id(node) in skip:
            continue
        if isinstance(node, ast.Import):
            out += [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = module.split(".")
                base = base[: len(base) - node.level + (1 if is_package else 0)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            out.append(target)
            out += [f"{target}.{a.name}" for a in node.names]
    return out


def _third_party_reached(todo: list[str], top_level_only: Callable[[str], bool]) -> set[str]:
    """Top-level third-party modules reached from the modules in ``todo`` by following imports of
    every duopath module reached; ``top_level_only(name)``: follow only that module's module-level
    imports (its functions' lazy imports do not run)."""
    seen: set[str] = set()
    third: set[str] = set()
    while todo:
        name = todo.pop()
        top = name.split(".")[0]
        if top != "duopath":
            if top and top not in sys.stdlib_module_names and top != "__future__":
                third.add(top)
            continue
        if name in seen:
            continue
        try:
            spec = importlib.util.find_spec(name)
        except (ModuleNotFoundError, ValueError):  # `from duopath.cli import app`: not a module
            spec = None
        if spec is None or spec.origin is None or not spec.origin.endswith(".py"):
            continue
        seen.add(name)
        parts = name.split(".")
        todo += [".".join(parts[:i]) for i in range(1, len(parts))]  # parent packages run too
        tree = ast.parse(Path(spec.origin).read_text())
        todo += _imports(tree, name, spec.submodule_search_locations is not None,
                         top_level_only=top_level_only(name))
    return third


def startup_imports() -> set[str]:
    """Third-party modules `python -m duopath <anything>` imports before any command runs.

    Follows module-level imports only (commands import their heavy modules lazily), starting at
    ``duopath.__main__`` (which loads the CLI package and, through it, every command module).
    """
    return _third_party_reached(["duopath.__main__"], lambda name: True)


def command_imports(func: object) -> set[str]:
    """Top-level third-party modules a `duopath` command needs.

    Starts from the imports inside the command function and the module-level imports of its
    module, then follows every import (module level and lazy ones inside functions) of each
    duopath module reached, because a lazy import runs when the command does its work.
    """
    entry = func.__module__
    todo = _imports(ast.parse(textwrap.dedent(inspect.getsource(func))), entry, False, False)
    todo.append(entry)

    def top_level_only(name: str) -> bool:
        # The `duopath` CLI package imports every command module to register it; of another
        # command's module only the module level runs (its body runs for that command only).
        # The shared options module is followed fully: its helpers run for every command.
        other_command = name == "duopath.cli" or (name.startswith("duopath.cli.")
                                                  and name != "duopath.cli.options")
        return name == entry or other_command

    return _third_party_reached(todo, top_level_only)


@cache
def _packages_distributions() -> dict[str, list[str]]:
    return metadata.packages_distributions()


def import_dist(module: str) -> str:
    dists = _packages_distributions().get(module)
    if dists:
        return norm(dists[0])
    return norm(IMPORT_TO_DIST_FALLBACK.get(module, module))


# --- tests ------------------------------------------------------------------------------------


def test_there_are_envs_and_rules_using_them() -> None:
    assert ENVS, "no envs/*.yaml"
    used = {env for _, _, env, _ in rules_with_envs()}
    assert used, "no rule has a conda: directive"
    for smk, rule, env, _ in rules_with_envs():
        assert env.exists(), f"rules/{smk}: rule {rule} names conda env {env}, which does not exist"
    unused = [p.name for p in ENVS if p.resolve() not in used]
    assert not unused, f"env files no rule uses: {unused}"


@pytest.mark.parametrize("env", ENVS, ids=lambda p: p.name)
def test_env_packages_are_project_dependencies(env: Path) -> None:
    problems = []
    direct = declared()
    for name, (written, _) in env_packages(env).items():
        if name in direct:
            continue
        parents = sorted(d for d in direct if name in requirements_of(d))
        if not parents:
            problems.append(f"{written}: not a dependency of the project (add it to pyproject.toml, "
                            f"or map its conda name in CONDA_TO_PYPI if PyPI calls it otherwise)")
    assert not problems, f"{env.name}:\n  " + "\n  ".join(problems)


@pytest.mark.parametrize("env", ENVS, ids=lambda p: p.name)
def test_env_version_bounds_agree_with_pyproject(env: Path) -> None:
    problems = []
    for name, (written, spec) in env_packages(env).items():
        if name not in declared():
            continue  # a dependency of a dependency: its parent's requirement decides
        project = project_range(name)
        p_lo, p_hi = bounds(project)
        e_lo, e_hi = bounds(spec)
        if p_lo is not None and (e_lo is None or e_lo < p_lo):
            problems.append(f"{written}{spec}: lower bound below the project's {project}")
        if p_hi is not None and (e_hi is None or e_hi > p_hi):
            problems.append(f"{written}{spec}: upper bound above the project's {project}")
        have = installed_version(name)
        if have is not None and have not in spec:
            problems.append(f"{written}{spec}: excludes {have}, the version installed and tested here")
    py = env_python(env)
    requires = SpecifierSet(pyproject()["project"].get("requires-python", ""))
    if py is None:
        problems.append("no python pin (conda would pick any version)")
    else:
        lo, _ = bounds(py)
        if lo is None or lo not in requires:
            problems.append(f"python{py} does not satisfy requires-python {requires}")
    assert not problems, f"{env.name}:\n  " + "\n  ".join(problems)


@pytest.mark.parametrize("rule", rules_with_envs(), ids=lambda r: f"{r[1]}")
def test_stage_env_has_what_its_command_imports(rule: tuple[str, str, Path, str | None]) -> None:
    smk, name, env, command = rule
    assert command is not None, f"rules/{smk}: rule {name} has a conda env but no `duopath` command"
    commands = cli_commands()
    assert command in commands, f"rules/{smk}: `duopath {command}` is not a duopath command"
    packages = env_packages(env)
    available = set(packages)
    for pkg in packages:
        available |= requirements_of(pkg)
    missing = []
    for module in sorted(startup_imports() | command_imports(commands[command])):
        if module in OPTIONAL_IMPORTS:
            continue
        dist = import_dist(module)
        if dist not in available:
            missing.append(f"{module} (distribution {dist})")
    assert not missing, (f"rule {name} runs `duopath {command}` in {env.name}, which lacks: "
                         f"{', '.join(missing)}")


def test_every_rule_runs_its_stage_with_the_envs_python() -> None:
    """`{DUOPATH}` (python -m duopath) and a conda env in every rule: with --sdm conda a bare
    `duopath` would be whichever console script is first on PATH (the project venv's), and a
    rule without `conda:` would run on whatever `python` the shell finds."""
    problems = []
    for smk, name, block in rule_blocks():
        shell = block[block.find("shell:"):] if "shell:" in block else ""
        shell = "\n".join(line for line in shell.splitlines() if not line.lstrip().startswith("#"))
        if re.search(r"(?<![\w.-])duopath\s+[a-z]", shell):
            problems.append(f"rules/{smk}: rule {name} calls the `duopath` console script")
        if "shell:" in block and "{DUOPATH}" not in block:
            problems.append(f"rules/{smk}: rule {name} does not run `{{DUOPATH}} <command>`")
        if "shell:" in block and "conda:" not in block:
            problems.append(f"rules/{smk}: rule {name} has no conda: env")
    assert not problems, "\n".join(problems)
    assert "typer" in startup_imports()  # the walk follows the CLI's start-up


def test_helpers_see_real_differences() -> None:
    """The parsers the tests above rely on read specs the way conda and pip do."""
    assert conda_spec("python=3.11") == ("python", SpecifierSet("==3.11.*"))
    assert conda_spec("numpy >=1.26,<2.4.4") == ("numpy", SpecifierSet(">=1.26,<2.4.4"))
    assert bounds(SpecifierSet("==3.11.*")) == (Version("3.11"), Version("3.12"))
    assert bounds(SpecifierSet(">=1.26,<2.4.4")) == (Version("1.26"), Version("2.4.4"))
    assert bounds(SpecifierSet(">=1,<3") & SpecifierSet(">=2,<4")) == (Version("2"), Version("3"))
    assert "scikit-image" in {import_dist("skimage")}
    tree = ast.parse("try:\n    import tiatoolbox\nexcept ImportError:\n    pass\nimport numpy\n")
    assert _imports(tree, "duopath.x", False, False) == ["numpy"]
