"""``kaffa plugin new NAME [DIR]``: write a complete, installable backend plugin package.

The package it writes (``kaffa-NAME``) has its own pyproject with the ``kaffa.backends`` entry
point, a backend on host memory, two example kernels (Relu and Add), a test file that runs the
conformance suite through kaffa's pytest plugin, and a README. ``pip install ./kaffa-NAME`` and
``kaffa conformance --backend NAME`` work straight away: Relu and Add pass, every other op shows
as unsupported. The templates are the files under ``kaffa/scaffold/plugin/``; ``$name``-style
placeholders are filled with :class:`string.Template`.
"""

from __future__ import annotations

import keyword
import re
import zlib
from importlib import resources
from pathlib import Path
from string import Template

from kaffa.plugins import BUILTIN_ORDER, PLUGIN_API

__all__ = ["PRIVATE_DEVICE_TYPES", "new_plugin"]

# Device types an out-of-tree backend may take (Caffe2's enum ends at 20, ONLY_FOR_TEST is 20901).
PRIVATE_DEVICE_TYPES = range(1000, 10000)

# template file -> path in the generated package ($module is the import name)
_FILES = {
    "pyproject.toml.tmpl": "pyproject.toml",
    "README.md.tmpl": "README.md",
    "init.py.tmpl": "$module/__init__.py",
    "backend.py.tmpl": "$module/backend.py",
    "kernels.py.tmpl": "$module/kernels.py",
    "test_conformance.py.tmpl": "tests/test_conformance.py",
}


def _check_name(name: str) -> str:
    if not re.fullmatch(r"[a-z][a-z0-9_]{0,30}", name) or keyword.iskeyword(name):
        raise ValueError(
            f"plugin name {name!r} must be a lower-case identifier (letters, digits, '_'; e.g. 'mychip'): "
            "it becomes the backend name, the entry-point name and part of the module name"
        )
    if name in BUILTIN_ORDER:
        raise ValueError(f"'{name}' is a built-in backend; choose another name")
    return name


def device_type_for(name: str) -> int:
    """A stable device-type number from the private range for ``name`` (edit it if it collides:
    kaffa quarantines a second backend that claims a taken device type, naming both)."""
    return PRIVATE_DEVICE_TYPES.start + zlib.crc32(name.encode()) % len(PRIVATE_DEVICE_TYPES)


def new_plugin(name: str, directory: str | Path | None = None, *, force: bool = False) -> Path:
    """Write the plugin package for backend ``name`` into ``directory`` (default ``./kaffa-NAME``)
    and return that directory. Refuses to overwrite existing files unless ``force``."""
    name = _check_name(name)
    root = Path(directory) if directory is not None else Path(f"kaffa-{name.replace('_', '-')}")
    values = {
        "name": name,
        "module": f"kaffa_{name}",
        "dist": f"kaffa-{name.replace('_', '-')}",
        "cls": "".join(p.capitalize() for p in name.split("_")) + "Backend",
        "api": PLUGIN_API,
        "device_type": str(device_type_for(name)),
    }
    targets = {root / Template(rel).substitute(values): tmpl for tmpl, rel in _FILES.items()}
    existing = [str(p) for p in targets if p.exists()]
    if existing and not force:
        raise FileExistsError(f"refusing to overwrite {', '.join(existing)} (pass force=True / --force)")
    source = resources.files(__package__) / "plugin"
    for path, tmpl in targets.items():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(Template(source.joinpath(tmpl).read_text(encoding="utf-8")).substitute(values))
    return root
