"""What importing the plugin costs, for bench/run.py: ``import_probe.py modules|profile|scan``.

Run with ``LLM_LOAD_PLUGINS=""`` (so that ``import llm.cli`` loads no plugin by itself), in
a fresh process each time, from a folder outside the work tree. Prints JSON:

- ``modules``: the top-level modules a fresh ``import llm_chatgptfree`` brings in (the
  third-party ones with their distributions), those it adds to what ``llm``'s command line
  has already imported when it loads plugins, and the plugin's dependencies not imported.
- ``profile``: the plugin's import after ``import llm.cli`` under cProfile, its time split
  by what the module body calls (dataclass decorators, ``re.compile``, class bodies, …);
  cProfile slows Python calls, so its shares are the figure, not its milliseconds.
- ``scan``: the milliseconds of the entry-point scan that llm (pluggy) does when plugins
  are on, without loading any: what ``LLM_LOAD_PLUGINS=""`` skips besides the plugin.
"""

from __future__ import annotations

import cProfile
import importlib
import json
import re
import subprocess
import sys
import time
from importlib import metadata

PLUGIN = "llm_chatgptfree"
DISTRIBUTION = "llm-chatgptfree"


def top_level(names: set[str]) -> set[str]:
    return {name.partition(".")[0] for name in names}


def normalized(distribution: str) -> str:
    return re.sub(r"[-_.]+", "-", distribution).lower()


def fresh() -> dict:
    """A fresh ``import llm_chatgptfree``: the top-level modules it brings in."""
    before = set(sys.modules)
    importlib.import_module(PLUGIN)
    names = top_level(set(sys.modules) - before) - {PLUGIN}
    owners = metadata.packages_distributions()
    third_party = sorted(
        name
        for name in names
        if name not in sys.stdlib_module_names and not name.startswith("_sysconfigdata")
    )
    return {"third_party": {name: sorted(owners.get(name, ["?"])) for name in third_party}}


def added() -> dict:
    """What the plugin adds to what ``llm``'s command line has imported when it loads plugins;
    and the plugin's dependencies (extras included, tests excluded) not imported at all."""
    importlib.import_module("llm.cli")
    before = set(sys.modules)
    importlib.import_module(PLUGIN)
    new = sorted(top_level(set(sys.modules) - before) - {PLUGIN})
    wanted = []
    for requirement in metadata.requires(DISTRIBUTION) or []:
        name, _, marker = requirement.partition(";")
        if "extra" in marker and not re.search(r"extra == .(browser|clearance).", marker):
            continue
        wanted.append(normalized(re.match(r"[A-Za-z0-9_.-]+", name.strip()).group()))
    provides: dict[str, set[str]] = {}
    for module, distributions in metadata.packages_distributions().items():
        for distribution in distributions:
            provides.setdefault(normalized(distribution), set()).add(module)
    deferred = sorted(
        module
        for distribution in wanted
        for module in provides.get(distribution, ())
        if module not in sys.modules and not module.startswith("_")
    )
    return {"added_to_llm_cli": new, "deferred": deferred}


def modules() -> dict:
    """``fresh`` here, ``added`` in a process of its own."""
    done = subprocess.run([sys.executable, __file__, "added"], check=True,
                          capture_output=True, text=True, timeout=60)  # fmt: skip
    return fresh() | json.loads(done.stdout)


def group(function: tuple[str, int, str]) -> str:
    """What a call made by the module body is, in a few words."""
    filename, _, name = function
    if filename.endswith("dataclasses.py"):
        return "@dataclass"
    if filename.endswith(("re/__init__.py", "re\\__init__.py")):
        return "re.compile"
    if name == "<built-in method builtins.__build_class__>":
        return "class bodies (the Options' pydantic model included)"
    if "importlib" in filename or name.startswith("<built-in method builtins.__import__"):
        return "imports of other modules"
    if "functools" in filename:
        return "functools"
    return name if filename == "~" else f"{name} ({filename.rpartition('/')[2]})"


def profile() -> dict:
    importlib.import_module("llm.cli")
    profiler = cProfile.Profile()
    profiler.enable()
    importlib.import_module(PLUGIN)
    profiler.disable()
    profiler.create_stats()
    stats = profiler.stats
    body = next(f for f in stats if f[2] == "<module>" and f[0].endswith(f"{PLUGIN}.py"))
    total = sum(tt for _cc, _nc, tt, _ct, _callers in stats.values())
    groups: dict[str, float] = {"the module body's own code": stats[body][2]}
    for function, (_cc, _nc, _tt, _ct, callers) in stats.items():
        if body in callers:  # called by the module body: its cumulative time from there
            name = group(function)
            groups[name] = groups.get(name, 0.0) + callers[body][3]
    loading = total - stats[body][3]  # finding the module and reading its byte code
    groups["finding and reading the byte code"] = loading
    small = [name for name, seconds in groups.items() if seconds < 0.02 * total]
    groups["other calls"] = sum(groups.pop(name) for name in small)
    return {"total": total, "groups": dict(sorted(groups.items(), key=lambda kv: -kv[1]))}


def scan() -> dict:
    started = time.perf_counter()
    found = [
        entry_point
        for distribution in list(metadata.distributions())
        for entry_point in distribution.entry_points
        if entry_point.group == "llm"
    ]
    seconds = time.perf_counter() - started
    return {"seconds": seconds, "distributions": len(list(metadata.distributions())),
            "entry_points": len(found)}  # fmt: skip


if __name__ == "__main__":
    modes = {"modules": modules, "added": added, "profile": profile, "scan": scan}
    print(json.dumps(modes[sys.argv[1]]()))
