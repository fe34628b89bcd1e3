"""Check that the wheel and the sdist hold the module, README and LICENSE, and nothing else
but packaging metadata: no tests, samples, cassettes or benchmarks."""

from __future__ import annotations

import sys
import tarfile
import zipfile
from pathlib import Path


def fail_unless(kind: str, names: set[str], allowed: set[str], needed: set[str]) -> None:
    unexpected = {n for n in names if n not in allowed and ".egg-info/" not in n}
    unexpected = {n for n in unexpected if ".dist-info/" not in n}
    missing = needed - names
    if unexpected or missing:
        sys.exit(f"{kind}: unexpected {sorted(unexpected)}, missing {sorted(missing)}")
    print(f"{kind}: {len(names)} files, as expected")


def main(folder: Path) -> None:
    (wheel,) = folder.glob("*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    license_file = next((n for n in names if n.endswith(".dist-info/licenses/LICENSE")), "")
    fail_unless(wheel.name, names, {"llm_chatgptfree.py"}, {"llm_chatgptfree.py", license_file})
    if not license_file:
        sys.exit(f"{wheel.name}: no LICENSE")
    (sdist,) = folder.glob("*.tar.gz")
    with tarfile.open(sdist) as archive:
        names = {m.name.split("/", 1)[1] for m in archive.getmembers() if m.isfile()}
    shipped = {"llm_chatgptfree.py", "README.md", "LICENSE"}
    metadata = {"PKG-INFO", "pyproject.toml", "setup.cfg", "MANIFEST.in"}
    fail_unless(sdist.name, names, shipped | metadata, shipped)


if __name__ == "__main__":
    main(Path(sys.argv[1]))
