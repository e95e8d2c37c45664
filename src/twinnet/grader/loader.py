"""A student's files, loaded by path in isolation, and every call into them guarded.

Each file (a .py file, or a Jupyter notebook's definitions: ``_NotebookLoader``) is executed as a module of
its own (under a private name, so two students' ``layers.py`` never meet in ``sys.modules``); while it loads,
its own folder comes first on ``sys.path`` so its imports of the files beside it resolve there, and every
module it brought in is removed afterwards.
A call into the student's code runs under a time limit, and whatever it raises becomes a
``StudentError`` naming the student's file and line, for the grader to report and go on.
"""

from __future__ import annotations

import ast
import contextlib
import functools
import hashlib
import importlib.abc
import importlib.machinery
import importlib.util
import json
import os
import re
import signal
import sys
import threading
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from twinnet import TwinnetError

ISOLATED = False  # set in `twinnet check`'s child process: there even KeyboardInterrupt is the student's
CALL_LIMIT_S = 10.0  # one call of a student's function; a loop that never ends fails that configuration
# a call still running this long after its limit has caught the limit's exception (a bare ``except:``
# around a loop): the child process calls HARD_STOP(what) from a watchdog thread, which ends it
GRACE_S = 5.0
LOAD_LIMIT_S = 60.0  # loading one file (what runs at its top level)
HARD_STOP: Callable[[str], None] | None = None


class StudentError(Exception):
    """The student's code raised, returned too late, or returned what cannot be graded."""

    def __init__(self, message: str, where: str | None = None, timed_out: bool = False) -> None:
        super().__init__(message)
        self.where = where  # "layers.py:42", the student's line it came from
        self.timed_out = timed_out  # ran past the time limit: the layer's other configurations are not run

    def __str__(self) -> str:
        return f"{self.args[0]} ({self.where})" if self.where else self.args[0]


class LoadError(TwinnetError):
    """Files of a submission that cannot be loaded: the message says why for each, ``files`` which they are (as
    ``load`` was given them), so that ``--each`` can grade a student's other files."""

    def __init__(self, message: str, files) -> None:
        super().__init__(message)
        self.files = [str(f) for f in files]


class TimeLimit(BaseException):
    """Raised inside a student's call that ran past its time limit (a BaseException: a bare
    ``except Exception`` in the student's code cannot swallow it)."""


@dataclass
class Submission:
    """The names a student's files define (later files win), and the files themselves."""

    names: dict[str, Any]
    files: list[Path]

    def get(self, name: str) -> Any:
        return lookup(self.names, name)


def lookup(names: dict[str, Any], name: str) -> Any:
    """The definition a convention names: a top-level name, or a dotted path into one (``Linear.forward``,
    a static method of the student's class); None where the files do not define it."""
    first, *rest = name.split(".")
    found = names.get(first)
    for part in rest:
        if found is None:
            break
        try:
            found = getattr(found, part, None)
        except Exception:  # noqa: BLE001 - a student's __getattr__ that raises: not defined, as far as we can tell
            found = None
    return found


def load(paths: list[Path]) -> Submission:
    """Execute each file as an isolated module; files that fail to load are a ``LoadError`` naming each file
    and line (the grader cannot go on without the student's definitions)."""
    files = []
    placed: dict[Path, Path] = {}  # each file where it was given: a link into a course's tree lies in that tree
    for p in paths:
        p = Path(p)
        if p.is_dir():
            raise TwinnetError(f"{p} is a folder; pass the student's .py files in it ({p}/*.py)")
        if p.exists() and not p.is_file():
            raise TwinnetError(f"{p} is not a regular file (a device, a socket or a pipe); pass the student's .py "
                               "files")
        if not p.is_file():
            raise TwinnetError(f"{p}: no such file; pass the student's .py files")
        if p.suffix not in (".py", ".ipynb"):
            raise TwinnetError(f"{p}: not a .py file or a Jupyter notebook (.ipynb); pass the student's Python files")
        try:
            with p.open("rb"):
                pass
        except OSError as e:
            raise TwinnetError(f"{p} cannot be read ({e.strerror}); check its permissions") from None
        if p.resolve() in files:  # one file named twice would replace its own definitions, and say so 20 times
            print(f"twinnet: warning: {p} is given more than once; it is graded once", file=sys.stderr)
            continue
        files.append(p.resolve())
        placed.setdefault(p.resolve(), Path(os.path.normpath(p.absolute())))
    _WARNED.clear()
    _WARNED_STAND_IN.clear()
    LEFT_OUT.clear()
    names: dict[str, Any] = {}
    origin: dict[str, str] = {}  # the file that defined each function or class, for a later file that replaces it
    problems, unloadable = [], []  # every file that cannot be loaded is told at once, not only the first
    shown = dict(zip(files, shown_names(files)))
    for path in files:
        try:
            module = _load_one(path, files, placed[path])
        except TwinnetError as e:
            text = str(e)  # a file named as its student would tell it from another of its name (b/layers.py)
            problems.append(shown[path] + text.removeprefix(path.name) if text.startswith(f"{path.name} ") else text)
            unloadable.append(path)
            continue
        defined = {k: v for k, v in vars(module).items() if not k.startswith("__")}
        for name, value in defined.items():
            if getattr(value, "__module__", None) != module.__name__ or not callable(value):
                continue  # imported (a starter's `from .layers import *` is the same definition), or not code
            if name in origin and names.get(name) is not value:
                print(f"twinnet: warning: {shown[path]} defines {name} again: its {name} is the one graded or "
                      f"called, not {origin[name]}'s (later files replace earlier ones; pass {origin[name]} last to "
                      "use its)",
                      file=sys.stderr)
            origin[name] = shown[path]
        names.update(defined)
    if problems:
        raise LoadError("; ".join(problems), unloadable)
    return Submission(names, files)


def shown_names(paths) -> list[str]:
    """Each file's name, or where two files share it, as many of its last path parts as tell them apart
    (exercise_2/layers.py and exercise_3/layers.py)."""
    parts = [Path(p).parts for p in paths]
    shown = []
    for i, mine in enumerate(parts):
        k = 1
        while k < len(mine) and any(j != i and other[-k:] == mine[-k:] for j, other in enumerate(parts)):
            k += 1
        shown.append(str(Path(*mine[-k:])))
    return shown


def named_once(paths) -> list[str]:
    """The files given, as given, each once: one named twice (or by two paths) is graded once (``load``)."""
    given: dict[Path, str] = {}
    for p in paths:
        try:
            where = Path(p).resolve()
        except (OSError, RuntimeError):  # a symbolic link that loops: told as no such file by ``load``
            where = Path(p).absolute()
        given.setdefault(where, str(p))
    return list(given.values())


def _load_one(path: Path, files: list[Path], placed: Path | None = None):
    """``path`` executed as a module, and the files beside it that it imports: an import of a module neither
    installed nor among the files given is left out with a warning (``_TolerantLoader``), so that only code that
    needs it fails when called. Its packages are those of the folder it was given in (``placed``: a symbolic link
    in a course's tree imports from that tree, as Python would)."""
    levels = [(placed or path).parent]  # each package level up, and the folder above the topmost (a runner may put
    while (levels[-1] / "__init__.py").is_file() and levels[-1].parent != levels[-1]:  # any of them on the path)
        levels.append(levels[-1].parent)
    package = _private_package(_package_chain(levels))
    # its folder first on the path (``import layers``), and the folder above its package where the folder is one
    # (``from cs231n.layers import *`` from inside cs231n/, ``from mytorch.nn.activation import Softmax`` from
    # inside mytorch/nn/), then the other files' folders: a file given from another folder (a repository's
    # mlp_numpy.py apart from its modules.py) is imported as if beside it
    folders = [str(level) for level in levels]
    folders += [f for f in dict.fromkeys(str(f.parent) for f in files) if f not in folders]
    finder = _TolerantFinder(folders, [Path(f) for f in files])
    if path.suffix == ".ipynb":
        spec = importlib.util.spec_from_loader(f"{package}.{path.stem}", _NotebookLoader(path), origin=str(path))
    else:
        spec = importlib.util.spec_from_file_location(f"{package}.{path.stem}", path,
                                                      loader=_TolerantLoader(path, folders))
    module = importlib.util.module_from_spec(spec)
    before = set(sys.modules)
    sys.path[:0] = folders
    sys.meta_path.insert(0, finder)
    torch = sys.modules.get("torch")
    grad = torch.is_grad_enabled() if torch is not None else True  # a file may switch autograd off for all
    watchdog = None  # a load still running GRACE_S after its limit caught the limit's exception: HARD_STOP
    if HARD_STOP is not None:
        watchdog = threading.Timer(LOAD_LIMIT_S + GRACE_S, HARD_STOP, args=(f"loading {path}",))
        watchdog.daemon = True
        watchdog.start()
    try:
        with time_limit(LOAD_LIMIT_S):
            spec.loader.exec_module(module)
    except BaseException as e:  # noqa: BLE001 - the student's file, not ours (Ctrl-C: see `call`)
        if isinstance(e, KeyboardInterrupt) and not ISOLATED or isinstance(e, TwinnetError):  # ours says it all
            raise
        raise _load_error(e, path, files, _unresolved(e, folders), package) from None
    finally:
        if watchdog is not None:
            watchdog.cancel()
        with contextlib.suppress(ValueError):  # the file may have taken it off itself
            sys.meta_path.remove(finder)
        for folder in folders:
            with contextlib.suppress(ValueError):  # the file may have taken it off the path itself
                sys.path.remove(folder)
        for name in [m for m in sys.modules if m.split(".")[0] in finder.namespaces]:  # the folders it imported
            sys.modules.pop(name, None)  # as packages without an __init__.py, and what they hold
        if (torch := sys.modules.get("torch")) is not None:
            torch.set_grad_enabled(grad)
        given = [Path(f) for f in folders]
        for name in set(sys.modules) - before:  # the files beside it (or another's) it imported: private to this load
            mod = sys.modules.get(name)
            where = Path(str(getattr(mod, "__file__", "") or ""))
            # ... not a package installed in an environment made inside the course's folder (CS231n's .env/); and
            # every module of its private package (``from ..layers import *``), wherever the file
            if mod is not None and (any(where.is_relative_to(g) for g in given) and not
                                    {"site-packages", "dist-packages"} & set(where.parts) or
                                    name.startswith(_PRIVATE) and getattr(mod, "__file__", None) or
                                    where in _STAND_INS.values()):
                del sys.modules[name]
    return module


_PRIVATE = "twinnet_student_"  # the start of the private packages' names


def _package_chain(levels: list[Path]) -> list[Path]:
    """The folders of the private package a file of ``levels[0]`` is loaded in, innermost first: its folder and
    each above it with an ``__init__.py`` (``levels``, but the last), and at least the two above it, as Python 3
    imports folders without one (namespace packages: a cs231n/classifiers/ that lacks its __init__.py)."""
    packages, named = levels[:-1] or levels[:1], [levels[0], *levels[0].parents[:2]]
    return packages if len(packages) >= len(named) else named


def _private_package(chain: list[Path]) -> str:
    """The private package a file of ``chain[0]`` is loaded in, made (as packages whose ``__init__.py`` is not run)
    where not yet: one level for each folder of ``chain``, so that the course's relative imports find the files
    beside it (``from .layers import *``) and above it (``from ..layers import *`` in cs231n/classifiers/fc_net.py
    finds cs231n/layers.py). Its top is named from its folder's path (any name the file system holds, UTF-8 or not),
    each level below by its folder's name where that is one (else from its path too)."""

    def private(folder: Path) -> str:
        return f"{_PRIVATE}{hashlib.sha256(os.fsencode(folder)).hexdigest()[:12]}"
    name = private(chain[-1])
    for i, folder in enumerate(reversed(chain)):
        name = name if i == 0 else f"{name}.{folder.name if folder.name.isidentifier() else private(folder)}"
        if name not in sys.modules:
            holder = importlib.util.module_from_spec(importlib.machinery.ModuleSpec(name, None, is_package=True))
            holder.__path__ = [str(folder)]
            sys.modules[name] = holder
    return name


def _unresolved(e: BaseException, folders: list[str]) -> bool:
    """Whether ``e`` is an import of a module neither installed nor among the student's files (not a name
    missing from a module that is there, ``from layers import helpr``)."""
    if isinstance(e, ImportError) and not isinstance(e, ModuleNotFoundError) and getattr(e, "name", None):
        # ``from cs231n import im2col`` where cs231n/ is the student's folder (no __init__.py) and im2col.py is
        # not given: a name missing from that folder's namespace package, not from a module that is there
        package = sys.modules.get(e.name)
        return package is not None and getattr(package, "__file__", None) is None and \
            any(Path(f).is_relative_to(p) for p in getattr(package, "__path__", ()) for f in folders) and \
            not _installed(e.name, folders)
    return isinstance(e, ModuleNotFoundError) and bool(getattr(e, "name", None)) and not _installed(e.name, folders)


def _above_the_top(node: ast.stmt, e: BaseException) -> bool:
    """Whether ``e`` is a relative import's reaching above the topmost level of its file's private package (``from
    ....layers import *``: above its folder, the two above it and any further with an __init__.py)."""
    return isinstance(node, ast.ImportFrom) and node.level > 1 and getattr(e, "name", None) is None and \
        "beyond top-level package" in str(e)


def _notebook_json(path: Path) -> bool:
    """Whether ``path`` holds a notebook's JSON (a .ipynb saved under another name, which Python reads as a dict
    until its first null, true or false)."""
    import json

    try:
        return "cells" in json.loads(path.read_text(encoding="utf-8", errors="replace"))
    except (OSError, ValueError, TypeError, RecursionError):
        return False


def _load_error(e: BaseException, path: Path, files: list[Path], unresolved: bool, package: str) -> TwinnetError:
    """The error that a file which cannot be loaded gives: what it raised, where, and what to do."""
    where = student_line(e, files)
    if isinstance(e, SyntaxError) and where:  # its message names the file and line as ``where`` does: once
        what = f"{type(e).__name__}: {e.msg}"
        if any(s in str(e.msg) for s in _PYTHON2_SYNTAX):
            what += " (Python 2 code, which Python 3 cannot run: port it, print(...) and except E as e)"
    else:
        what = (f"took more than {LOAD_LIMIT_S:g} s to load" if isinstance(e, TimeLimit) else type(e).__name__ + (
            f": {e}" if str(e) else " (raised as it was imported)"))
    what = public(what, package)  # a relative import's module, as the student wrote it
    if isinstance(e, NameError) and getattr(e, "name", None):
        what += left_out_note([e.name], files)
    advice = ""
    if unresolved:
        advice = "; " + _unresolved_advice(public(e.name, package), files)
    elif isinstance(e, TimeLimit):
        advice = ("; a file graded is imported, so work at its top level runs then: an endless loop, or training "
                  "or a test run there, belongs under `if __name__ == \"__main__\":`")
    elif isinstance(e, NameError) and getattr(e, "name", None) in ("null", "true", "false") and _notebook_json(path):
        advice = (f"; {path.name} holds a Jupyter notebook's JSON, not Python: rename it {path.stem}.ipynb, whose "
                  "code cells are graded")
    return TwinnetError(f"{path.name} cannot be loaded: {what}" + (f" ({where})" if where else "") + advice)


def _named_levels(folder: Path) -> tuple[Path, ...]:
    """A folder of the files given and the two above it: the folders a file's import may name as packages without an
    __init__.py (``from mytorch.nn.loss import *`` from inside mytorch/nn/)."""
    return (folder, *folder.parents[:2])


def _unresolved_advice(missing: str, files: list[Path] = ()) -> str:
    """What to do about an import of a module neither installed nor among the files given (of a folder the files
    lie in, as mytorch/ of mytorch/rnn_cell.py: the course's own package, not one to install)."""
    package = missing.split(".")[0]
    if package and package in {a.name for f in files for a in _named_levels(Path(f).absolute().parent)}:
        return (f"{missing} is the course's own ({package}/ holds the files given), not a package to install: pass "
                "its file too (for a course's package, every .py file of its folder), or remove the import if it "
                "is unused")
    install = "" if missing.startswith(".") else f"install it if it is a package (pip install {package}), or "
    return (f"{missing} is neither installed nor among the files given: {install}pass its file too if it is the "
            "course's own (for a course's package, every .py file of its folder), or remove the import if it is unused")


def _bound(node: ast.Import | ast.ImportFrom) -> list[str]:
    """The names an import statement binds (``*`` for ``from x import *``)."""
    if isinstance(node, ast.ImportFrom):
        return [a.asname or a.name for a in node.names]
    return [a.asname or a.name.split(".")[0] for a in node.names]


# per file loaded: each name that an import left out would have bound -> where that import is, and why it failed
LEFT_OUT: dict[Path, dict[str, str]] = {}


def _leave_out(path: Path, node: ast.stmt, where: str, e: BaseException, package: str) -> set[str]:
    """Record and warn of an import (or a statement) of ``path``, a module of ``package``, left out; the names it
    would have bound."""
    what = "import" if isinstance(node, (ast.Import, ast.ImportFrom)) else "statement"
    told = f"{where}: {type(e).__name__}: {public(str(e), package)}"
    if (path, told) not in _WARNED:  # a file beside several of those given is loaded with each: told once
        _WARNED.add((path, told))
        print(f"twinnet: warning: {told}; that {what} is left out, and code that needs it fails when called",
              file=sys.stderr)
    if what != "import":
        return set()
    names = _bound(node)
    missing = getattr(e, "name", None)
    if missing and not isinstance(e, ModuleNotFoundError) and (named := re.match(r"cannot import name '(\w+)'",
                                                                                  str(e))):
        missing += "." + named.group(1)  # ``from .. import layer_utilz``: the module missing from that package
    advice = _unresolved_advice(public(missing, package), [path]) if missing else "pass what it imports too"
    first = (node.module or node.names[0].name).split(".")[0] if isinstance(node, ast.ImportFrom) else ""
    if missing and isinstance(node, ast.ImportFrom) and node.level > 1 and (path.parent / f"{first}.py").is_file():
        above = "one folder" if node.level == 2 else f"{node.level - 1} folders"
        advice = (f"{'.' * node.level}{node.module or ''} is looked for {above} above {path.name}, but {first}.py "
                  "lies beside it (a submission flattened into one folder?): grade the files where they lie in the "
                  "course's tree")
    if _above_the_top(node, e):
        advice = (f"{'.' * node.level}{node.module or ''} lies above the folders loaded as packages (the file's, the "
                  "two above it and any further with an __init__.py): grade the file where it lies in the course's "
                  "tree")
    LEFT_OUT.setdefault(path, {}).update({n: f"{told}; {advice}" for n in names})
    return set(names)


_WARNED: set[tuple[Path, str]] = set()  # the warnings of the files loaded by one ``load``


def public(text: str, package: str) -> str:
    """``text`` with each module of the grader's private packages named as an import in ``package`` (the
    importing file's) spells it: ``twinnet_student_….classifiers.layers`` as ``.layers`` from classifiers/ and
    ``twinnet_student_….layers`` as ``..layers``."""
    base = package.split(".") if package.startswith(_PRIVATE) else []

    def relative(match: re.Match) -> str:
        parts = match.group(0).split(".")
        same = 0  # the levels the module's name shares with the importing file's package
        while same < min(len(parts), len(base)) and parts[same] == base[same]:
            same += 1
        if not same:  # a package other than the file's: named from its top
            return "." + ".".join(parts[1:])
        return "." * (len(base) - same + 1) + ".".join(parts[same:])  # ``..layers``; the package itself ``.``
    return re.sub(_PRIVATE + r"[0-9a-f]{12}(?:\.\w+)*", relative, text)


def left_out_note(names: list[str], files: list[Path]) -> str:
    """Where names a student's code lacks would have come from an import left out as the files were loaded
    (of the files given, or beside them), that import and what to do (else "")."""
    folders = {f.parent for f in files}
    bound = [v for p, v in LEFT_OUT.items() if p.parent in folders]
    came = {}  # each missing name an import left out would have bound, and that import
    for name in names:
        top = name.split(".")[0]
        if found := next((v[top] for v in bound if top in v), None):
            came.setdefault(top, found)
    if came:
        found = next(iter(came.values()))  # the first such import, with every name it would have bound
        tops = [top for top, where in came.items() if where == found]
        which = tops[0] if len(tops) == 1 else f"{', '.join(tops[:-1])} and {tops[-1]}"
        verb = "comes" if len(tops) == 1 else "come"
        return f" ({which} {verb} from an import left out as the files were loaded, {found})"
    if star := next((v["*"] for v in bound if "*" in v), None):
        return f" (an import * left out as the files were loaded may have defined it, {star})"
    return ""


class _TolerantLoader(importlib.abc.Loader):
    """A .py file run one top-level statement at a time (compiled whole first, so that it is refused for what an
    import refuses), as an import runs it, except that an import of a module neither installed nor among the files
    given is left out with a warning (a course's helper file that imports torchvision, matplotlib or the course's
    own package for its plots), and so is a later statement that fails for want of a name such an import would
    have bound (any name, after an ``import *`` left out): only code that needs them fails when called."""

    def __init__(self, path: Path, folders: list[str]) -> None:
        self.path, self.folders = path, folders

    def create_module(self, spec):
        return None

    def exec_module(self, module) -> None:
        import __future__

        tree = ast.parse(self.path.read_bytes(), str(self.path))
        compile(tree, str(self.path), "exec", dont_inherit=True)  # what only the whole compiles refuses
        flags, missing = 0, set()
        for node in tree.body:
            code = compile(ast.Module([node], type_ignores=[]), str(self.path), "exec", flags=flags, dont_inherit=True)
            if isinstance(node, ast.ImportFrom) and node.module == "__future__":
                for alias in node.names:
                    flags |= getattr(__future__, alias.name).compiler_flag
            try:
                exec(code, module.__dict__)  # noqa: S102 - the student's own code, as `import` would run it
            except ImportError as e:
                if (kept := _but_left_out(node, e, module, self.path)) is not None:
                    missing |= kept
                    continue
                if not isinstance(node, (ast.Import, ast.ImportFrom)) or not (_unresolved(e, self.folders) or
                                                                              _above_the_top(node, e)):
                    raise
                missing |= _leave_out(self.path, node, f"{self.path.name}:{node.lineno}", e, module.__package__)
            except NameError as e:
                if getattr(e, "name", None) not in missing and "*" not in missing:
                    raise
                _leave_out(self.path, node, f"{self.path.name}:{node.lineno}", e, module.__package__)


def _but_left_out(node: ast.stmt, e: ImportError, module, path: Path) -> set[str] | None:
    """Where ``from m import a, b, c`` failed only for names that m's own imports left out (EECS 498's
    convolutional_networks.py takes ``Solver`` from fully_connected_networks.py, which took it from the course's
    eecs598, not installed here): the other names bound into ``module``, and those left out in turn, said; the names
    left out. None where that is not the failure."""
    source = sys.modules.get(getattr(e, "name", None) or "")
    if not isinstance(node, ast.ImportFrom) or isinstance(e, ModuleNotFoundError) or source is None or \
            "cannot import name" not in str(e) or not getattr(source, "__file__", None):
        return None
    theirs = next((why for p, why in LEFT_OUT.items() if p.resolve() == Path(source.__file__).resolve()), {})
    absent = [a for a in node.names if a.name != "*" and not hasattr(source, a.name)]
    if not absent or any(a.name not in theirs and "*" not in theirs for a in absent):
        return None  # (a name its ``import *`` left out may have bound: told as such below)
    for alias in node.names:
        if alias.name != "*" and hasattr(source, alias.name):
            module.__dict__[alias.asname or alias.name] = getattr(source, alias.name)
    where = f"{path.name}:{node.lineno}"
    for alias in absent:
        told = f"{where}: {alias.name} from {Path(source.__file__).name}, " + (
            "whose import of it was left out" if alias.name in theirs else
            "which lacks it; its `import *` that was left out may have bound it")
        if (path, told) not in _WARNED:
            _WARNED.add((path, told))
            print(f"twinnet: warning: {told}; it is left out here too", file=sys.stderr)
        LEFT_OUT.setdefault(path, {})[alias.asname or alias.name] = theirs.get(alias.name, theirs.get("*", ""))
    return {alias.asname or alias.name for alias in absent}


# the course modules that are compiled (never built where the grader runs, often), by name: twinnet's NumPy versions
_STAND_INS = {"im2col_cython": Path(__file__).with_name("courses") / "im2col_cython.py"}
_WARNED_STAND_IN: set[str] = set()


class _TolerantFinder(importlib.abc.MetaPathFinder):
    """The files beside a student's (in ``folders``) imported with ``_TolerantLoader`` while a file is loaded."""

    def __init__(self, folders: list[str], files: list[Path] = ()) -> None:
        self.folders = folders
        self.namespaces: set[str] = set()  # the folders imported as packages without an __init__.py
        # the .py files given, by module name: one of them is imported before a file of that name beside the
        # importing file that was not given (a repository's own activation.py beside gru_cell.py, where the
        # teacher passes another)
        python = [f for f in files if f.suffix == ".py"]
        self.given = {f.resolve() for f in python}
        self.by_name = {f.stem: f for f in reversed(python)}  # the first given of a name

    def find_spec(self, name, path=None, target=None):
        spec = importlib.machinery.PathFinder.find_spec(name, self.folders if path is None else path)
        stand_in = _STAND_INS.get(name.rpartition(".")[2])
        if spec is None and stand_in is not None:  # a course's compiled module, not built here: its NumPy version
            if name.rpartition(".")[2] not in _WARNED_STAND_IN:
                _WARNED_STAND_IN.add(name.rpartition(".")[2])
                print(f"twinnet: note: {name.rpartition('.')[2]}, the course's Cython module, is not built here; "
                      "twinnet's NumPy version of it is used in its place", file=sys.stderr)
            return importlib.util.spec_from_file_location(name, stand_in)
        if path is None and name in self.by_name and not (spec is not None and spec.origin and
                                                          Path(spec.origin).resolve() in self.given):
            origin = self.by_name[name]
            return importlib.util.spec_from_file_location(name, origin, loader=_TolerantLoader(origin, self.folders))
        if spec is None and path is None and "." not in name:
            # a folder of the files given, or one or two above it, imported by its name as Python 3 imports a
            # folder with no __init__.py (``from nndl.layers import *`` from inside nndl/, ``from mytorch.nn.loss
            # import *`` from inside mytorch/nn/), where no installed package has that name
            where = list(dict.fromkeys(str(a) for f in self.folders for a in _named_levels(Path(f))
                                       if a.name == name))
            if where and not _installed(name, self.folders):
                self.namespaces.add(name)
                spec = importlib.machinery.ModuleSpec(name, None, is_package=True)
                spec.submodule_search_locations = where
                return spec
        origin = Path(spec.origin) if spec is not None and spec.origin else None
        if origin is None or origin.suffix != ".py" or {"site-packages", "dist-packages"} & set(origin.parts) or \
                not (any(origin.is_relative_to(f) for f in self.folders) or name.startswith(_PRIVATE)):
            return None
        return importlib.util.spec_from_file_location(name, origin, loader=_TolerantLoader(origin, self.folders),
                                                      submodule_search_locations=spec.submodule_search_locations)


# a notebook's cells: for each of its code cells, the line where it starts in the source the loader builds
_NOTEBOOK_CELLS: dict[Path, list[int]] = {}
_KEPT = (ast.Import, ast.ImportFrom, ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)


def notebook_source(path: Path) -> str:
    """A Jupyter notebook's code cells as one module's source, each cell's lines where they stand (a line of a
    traceback is then a cell's line) and its IPython magics and shell lines (``%matplotlib``, ``!pip``) blank."""
    try:
        notebook = json.loads(path.read_bytes())
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise TwinnetError(f"{path.name} is not a Jupyter notebook: it is not valid JSON ({e}); pass the notebook "
                           "file as Jupyter saved it, or its code as a .py file") from None
    cells = notebook.get("cells") if isinstance(notebook, dict) else None
    if cells is None and isinstance(notebook, dict) and "worksheets" in notebook:  # nbformat 3: in worksheets,
        # their code under "input"
        cells = [c for w in notebook.get("worksheets") or [] if isinstance(w, dict) for c in w.get("cells") or []]
    if not isinstance(cells, list):
        raise TwinnetError(f"{path.name} is not a Jupyter notebook: it has no list of cells; pass the notebook file "
                           "as Jupyter saved it, or its code as a .py file")
    lines: list[str] = []
    starts = []
    for cell in cells:
        if not isinstance(cell, dict) or cell.get("cell_type") != "code":
            continue
        text = cell.get("source", cell.get("input", ""))
        if not (isinstance(text, str) or isinstance(text, list) and all(isinstance(t, str) for t in text)):
            raise TwinnetError(f"{path.name} is not a Jupyter notebook as Jupyter saves it: code cell {len(starts) + 1}'s "
                               "source is not text (a string, or a list of lines); pass the notebook as Jupyter saved "
                               "it, or its code as a .py file")
        text = "".join(text) if isinstance(text, list) else text
        cell_lines = text.splitlines()
        if cell_lines and cell_lines[0].lstrip().startswith("%%"):  # a cell magic (%%timeit, %%bash): not Python
            cell_lines = [""] * len(cell_lines)
        starts.append(len(lines) + 1)
        lines += ["" if line.lstrip().startswith(("%", "!")) else line for line in cell_lines] + [""]
    _NOTEBOOK_CELLS[path] = starts
    return "\n".join(lines)


class _NotebookLoader(importlib.abc.Loader):
    """Runs a notebook's definitions only: the imports, functions and classes of its code cells, and
    assignments of constants to names; what else a cell does (load data, train, plot, test) is left out, since
    grading needs the definitions. A cell that is not valid Python is left out whole; a definition that fails
    (an import of a package the grader lacks, a name from a cell that was not run) is left out with a warning,
    so what needs it fails when it is called."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def create_module(self, spec):
        return None

    def exec_module(self, module) -> None:
        source = notebook_source(self.path)
        module.__file__ = str(self.path)
        starts = _NOTEBOOK_CELLS[self.path] + [source.count("\n") + 2]
        lines = source.split("\n")
        for number, (first, end) in enumerate(zip(starts, starts[1:]), 1):
            cell = "\n".join(lines[first - 1:end - 1])
            try:
                tree = ast.parse("\n" * (first - 1) + cell, str(self.path))
            except SyntaxError as e:
                print(f"twinnet: warning: {self.path.name}, code cell {number}: not valid Python ({e.msg}), left out",
                      file=sys.stderr)
                continue
            for node in tree.body:
                if not (isinstance(node, _KEPT) or _constant(node)):
                    continue
                code = compile(ast.Module([node], type_ignores=[]), str(self.path), "exec")
                try:
                    exec(code, module.__dict__)  # noqa: S102 - the student's own code, as `import` would run it
                except Exception as e:  # noqa: BLE001 - a failed import, or a name from a cell that was not run
                    _leave_out(self.path, node, f"{self.path.name}, code cell {number}, line {node.lineno - first + 1}",
                               e, module.__package__)


def _constant(node: ast.stmt) -> bool:
    """An assignment of a literal (``layers_dims = [12288, 20, 7, 1]``) or of a name (``dtype = np.float64``):
    kept with the definitions; one that calls anything (``X = np.load(...)``) is not."""
    if not isinstance(node, (ast.Assign, ast.AnnAssign)) or node.value is None:
        return False
    targets = node.targets if isinstance(node, ast.Assign) else [node.target]
    if not all(isinstance(n, (ast.Name, ast.Tuple, ast.Store)) for t in targets for n in ast.walk(t)):
        return False  # plt.rcParams[...] = ..., an object's attribute: not a definition
    if all(isinstance(n, (ast.Name, ast.Attribute, ast.Load)) for n in ast.walk(node.value)):
        return True
    try:
        ast.literal_eval(node.value)
    except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
        return False
    return True


# the import path as it was before any student's file ran: a file's own sys.path.append("..") (Deep Learning from
# Scratch's readers put the folder above common/ there) makes no folder of the course's an installed package
_PATH_BEFORE = list(sys.path)


def _installed(name: str, folders: list[str]) -> bool:
    """Whether ``name``'s top-level package is installed here, not merely beside the student's files (numpy:
    yes; the course's own cs231n: no)."""
    top = name.split(".")[0]
    if top.startswith(_PRIVATE):
        return False
    try:
        return importlib.machinery.PathFinder.find_spec(top, [p for p in _PATH_BEFORE if p not in folders]) is not None
    except (ImportError, ValueError):
        return False


def student_line(error: BaseException, files: list[Path]) -> str | None:
    """``file.py:LINE`` of the innermost frame of ``error``'s traceback inside the student's files."""
    frames = traceback.extract_tb(error.__traceback__)
    if isinstance(error, SyntaxError) and error.filename:
        return f"{Path(error.filename).name}:{error.lineno}"
    folders = {f.parent for f in files}
    if not files:  # code defined in a notebook or an interactive session: the innermost frame not of a library
        package = str(Path(__file__).resolve().parents[1])
        mine = [f for f in frames if not f.filename.startswith(package) and "site-packages" not in f.filename
                and "/lib/python" not in f.filename]
        return f"{mine[-1].filename} line {mine[-1].lineno}" if mine else None
    mine = [(f, shown) for f in frames if (shown := _students_file(f.filename, files, folders))]
    if not mine:
        return None
    (frame, shown), path = mine[-1], Path(mine[-1][0].filename).resolve()
    line = frame.lineno
    if (starts := _NOTEBOOK_CELLS.get(path)) and line is not None:  # a notebook's line as its cell's
        cell = max(k for k, start in enumerate(starts) if start <= line) if line >= starts[0] else 0
        return f"{shown} code cell {cell + 1}, line {line - starts[cell] + 1}"
    return f"{shown}:{line}"


_OWN_PACKAGE = Path(__file__).resolve().parents[1]  # twinnet's own code: never the student's, wherever it lies


def _students_file(filename: str, files: list[Path], folders: set[Path]) -> str | None:
    """How a traceback's file is named if it is the student's (one given, or a helper beside one, in a folder below
    it, as ``pkg/helpers.py``, or in one of the two folders above it, as ``../layers.py``: where a course's package
    keeps its modules), else None (Python's own frames, ``<frozen ...>``, installed packages, twinnet's, and code
    on the import path the grader was started with, such as a course's starter code)."""
    if filename.startswith("<"):
        return None
    path = Path(filename).resolve()
    if path in files or path.parent in folders:
        return path.name
    if any(part in ("site-packages", "dist-packages") for part in path.parts) or \
            any(path.is_relative_to(root) for root in _not_students(tuple(_PATH_BEFORE), frozenset(folders))):
        return None
    near = [os.path.relpath(path, f) for f in folders
            if path.is_relative_to(f) or path.parent in _named_levels(f)]
    return min(near, key=len).replace(os.sep, "/") if near else None


@functools.lru_cache(maxsize=8)
def _not_students(path_before: tuple[str, ...], folders: frozenset[Path]) -> tuple[Path, ...]:
    """The folders whose code is never the student's: twinnet's, Python's (its prefixes), and those of the import
    path the grader started with (PYTHONPATH's among them) but the student's folders and the folders above them,
    resolved once for each submission rather than for each frame of each traceback."""
    def resolved(entries) -> list[Path]:
        out = []
        for entry in entries:
            with contextlib.suppress(OSError, RuntimeError):
                out.append(Path(entry or ".").resolve())
        return out

    theirs = {level for f in folders for level in (f, *f.parents)}  # an entry above the files may hold them
    return (_OWN_PACKAGE, *resolved((sys.prefix, sys.base_prefix)),
            *(r for r in resolved(path_before) if r not in theirs))


@contextlib.contextmanager
def time_limit(seconds: float):
    """Raise ``TimeLimit`` in the code inside after ``seconds`` (main thread on POSIX; elsewhere no limit)."""
    if threading.current_thread() is not threading.main_thread() or not hasattr(signal, "setitimer"):
        yield
        return

    def expired(signum, frame):
        raise TimeLimit

    previous = signal.signal(signal.SIGALRM, expired)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def call(files: list[Path], fn, *args, what: str = "", **kwargs):
    """``fn(*args, **kwargs)`` from the student's code: its result, or a ``StudentError`` saying
    what went wrong and where (an exception, the time limit)."""
    watchdog = None
    if HARD_STOP is not None:
        watchdog = threading.Timer(CALL_LIMIT_S + GRACE_S, HARD_STOP, args=(what or "a call",))
        watchdog.daemon = True
        watchdog.start()
    try:
        with time_limit(CALL_LIMIT_S):
            return fn(*args, **kwargs)
    except TimeLimit:
        raise StudentError(f"{what or 'a call'} ran for more than {CALL_LIMIT_S:g} s", timed_out=True) from None
    except BaseException as e:  # noqa: BLE001 - anything the student's code raises is graded, KeyboardInterrupt
        # too where `twinnet check` grades in a child process (a real Ctrl-C stops its parent, which ends it)
        if isinstance(e, KeyboardInterrupt) and not ISOLATED:
            raise
        text = public(str(e).splitlines()[0], _package_of(fn))[:160] if str(e) else ""
        message = f"{what or 'a call'} raised {type(e).__name__}: {text}"
        message = message.rstrip(": ")
        message += era_hint(e) + placeholder_hint(e)
        if isinstance(e, NameError) and getattr(e, "name", None):
            message += left_out_note([e.name], files) + _unbuilt(e.name, files)
        raise StudentError(message, student_line(e, files)) from None
    finally:
        if watchdog is not None:
            watchdog.cancel()


def _unbuilt(name: str, files: list[Path]) -> str:
    """Where ``name`` is defined in a Cython module of the course's (a .pyx file in a folder of the files or one of
    the two above: CS231n's im2col_cython.pyx for its fast layers) that is not built here, what to do; else ""."""
    folders = dict.fromkeys(level for f in files for level in _named_levels(Path(f).absolute().parent))
    defined = re.compile(rf"^[ \t]*c?p?def\b[^(=\n]*\b{re.escape(name)}[ \t]*\(", re.MULTILINE)
    for folder in folders:
        with contextlib.suppress(OSError):
            for pyx in sorted(folder.glob("*.pyx"))[:20]:
                with contextlib.suppress(OSError):
                    if defined.search(pyx.read_text(encoding="utf-8", errors="replace")):
                        return (f" ({name} is defined in {pyx.name}, a Cython module of the course's that is not "
                                "built here: build it where it lies, `python setup.py build_ext --inplace` in "
                                f"{folder.name}/ as the course says, then grade again)")
    return ""


def _package_of(fn) -> str:
    """The package of the module that defined ``fn`` (a function, a bound method or a class), else ""."""
    while isinstance(fn, functools.partial):  # a constructor or a loss given its keywords
        fn = fn.func
    module = getattr(getattr(fn, "__func__", fn), "__module__", None)
    return module.rpartition(".")[0] if isinstance(module, str) else ""


# what code written for an older Python or NumPy raises here, and what it means
_FLOAT_AS_INT = ("'float' object cannot be interpreted as an integer", "float64' object cannot be interpreted",
                 "indices must be integers or slices, not float",
                 "indices must be integers or slices, not numpy.float", "array data from dtype('float64') to dtype('int64')",
                 "arrays used as indices must be of integer (or boolean) type")


def era_hint(e: BaseException) -> str:
    """Where a student's exception is what code of an older era raises now, why (else "")."""
    text = str(e)
    if isinstance(e, TypeError) and "arrays can be converted to Python scalars" in text:
        return (f" (if the array is of one element: NumPy {np.__version__} no longer turns that into a number, as "
                "NumPy 1 did: code of that era needs the element itself: a.item(), or an index to it, such as "
                f"b[0, 0, 0, c] for one channel's bias of shape (1, 1, 1, C){_UNDER_NUMPY1})")
    if isinstance(e, TypeError) and "unexpected keyword argument 'newshape'" in text:
        return (f" (NumPy {np.__version__} has no newshape= keyword in reshape, which NumPy 1 had: code of that era "
                f"needs the shape passed by position, np.reshape(a, shape){_UNDER_NUMPY1})")
    if isinstance(e, ValueError) and text.startswith("setting an array element with a sequence") and \
            "inhomogeneous" not in text:
        return (f" (if the value stored is an array of one element, such as the (1, 1) result of a product: NumPy "
                f"{np.__version__} refuses to store that in a single element, which NumPy 1 did; code of that era "
                f"needs its value, a.item(){_UNDER_NUMPY1})")
    gone = re.match(r"module 'numpy((?:\.\w+)*)' has no attribute '(\w+)'", text) if isinstance(e, AttributeError) \
        else None
    if gone:  # a name NumPy 1 had: a removed alias, or a function numpy.lib re-exported
        where, name = gone.groups()
        instead = _NUMPY1.get(name) if not where else f"np.{name}" if where == ".lib" and name in _NUMPY1_LIB else None
        if instead:
            return (f" (np{where}.{name} is NumPy 1's, removed from NumPy {np.__version__}: code of that era needs "
                    f"{instead}{_UNDER_NUMPY1 if where == '.lib' and name not in _NOT_IN_NUMPY126 else ''})")
    if isinstance(e, NameError) and getattr(e, "name", None) in ("xrange", "unicode", "raw_input", "basestring"):
        return f" ({e.name} is Python 2's; Python 3 has {_PY3[e.name]})"
    if isinstance(e, (TypeError, IndexError)) and any(s in text for s in _FLOAT_AS_INT):
        return (" (a float where an integer belongs: a size or index computed with /? In Python 3 / gives a float; "
                "Python 2's / of two integers was Python 3's //)")
    return ""


# what NumPy 2 refuses of what NumPy 1.26 (which twinnet runs on too: docs/RESULTS.md, "NumPy 1.26") ran as written
_UNDER_NUMPY1 = ("; or grade it under NumPy 1, as its course ran it: pip install \"numpy<2\" in twinnet's environment"
                 + (" (NumPy 1 runs on Python 3.12 at the newest)" if sys.version_info >= (3, 13) else ""))


# what Python 3 says of Python 2's print statement, exec statement and except clause
_PYTHON2_SYNTAX = ("Missing parentheses in call to 'print'", "Missing parentheses in call to 'exec'",
                   "multiple exception types must be parenthesized")
_PY3 = {"xrange": "range", "unicode": "str", "raw_input": "input", "basestring": "str"}
# NumPy 1's names that NumPy 2 (or 1.24, for the aliases of Python's types) removed, where NumPy's own message
# does not say what takes their place (it does for np.NaN, np.float_, np.sometrue and others) -> what does
_NUMPY1 = {"float": "float (or np.float64)", "int": "int (or np.int64)", "object": "object", "str": "str",
           "unicode": "str", "complex": "complex", "asscalar": "a.item()", "product": "np.prod",
           "cumproduct": "np.cumprod", "alltrue": "np.all", "rank": "np.ndim", "msort": "np.sort(a, axis=0)",
           "alen": "len", "math": "Python's math module"}
# the functions numpy.lib re-exported in NumPy 1 and NumPy 2 keeps at its top level only (np.lib.pad: np.pad); of
# them, those NumPy 1.26, the NumPy 1 twinnet runs on, no longer had there either
_NOT_IN_NUMPY126 = {"atleast_2d", "squeeze"}
_NUMPY1_LIB = {"pad", "tile", "kron", "diff", "gradient", "interp", "unique", "setdiff1d", "union1d", "intersect1d",
               "isin", "in1d", "polyfit", "polyval", "meshgrid", "vectorize", "piecewise", "select", "histogram",
               "percentile", "median", "apply_along_axis", "apply_over_axes", "column_stack", "dstack", "split",
               "array_split", "hsplit", "vsplit", "dsplit", "fliplr", "flipud", "rot90", "eye", "diag", "tri",
               "tril", "triu", "insert", "delete", "append", "trim_zeros", "ravel_multi_index", "unravel_index",
               "nan_to_num", "real_if_close", "iscomplexobj", "isrealobj", "expand_dims", "squeeze", "atleast_2d"}


def placeholder_hint(e: BaseException) -> str:
    """Where a student's exception is what an unfinished layer raises (an attribute or item of a value still None,
    as a starter's ``out = None`` before its TODO leaves it), that hint (else "")."""
    text = str(e)
    if (isinstance(e, AttributeError) and text.startswith("'NoneType' object has no attribute")) or \
            (isinstance(e, TypeError) and text.startswith("'NoneType' object is not subscriptable")):
        return " (a value still None: a starter's placeholder, such as out = None, left unfilled?)"
    if isinstance(e, TypeError) and ("output from dtype('O')" in text or
                                     re.search(r"unsupported operand type\(s\) for .*'NoneType'", text)):
        # CMU's starter: self.dW_ih += None  # TODO, or an array added to a None not yet computed
        return " (an array and None in one sum: a starter's placeholder, such as dW += None, left unfilled?)"
    return ""

