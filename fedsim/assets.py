"""Locate data files shipped inside the package (the mini dataset, default weights).

``flwr run`` ships the app as a bundle that holds only source and text files and puts its
copy of ``fedsim`` first on ``sys.path``, so a module may be imported from a folder without
its binary assets.  The pip-installed distribution still has them: listed in its RECORD
for a regular install, or under the project folder named by ``direct_url.json`` for an
editable one.
"""

from __future__ import annotations

import json
from pathlib import Path

PACKAGE_DIR = Path(__file__).resolve().parent


def package_file(relpath: str) -> Path:
    """Path of ``fedsim/<relpath>``; the in-tree path (even if missing) when not found elsewhere."""
    here = PACKAGE_DIR / relpath
    if here.is_file():
        return here
    wanted = f"fedsim/{relpath}"
    try:
        from importlib.metadata import PackageNotFoundError, distribution
        from urllib.parse import unquote, urlparse

        dist = distribution("fedsim")
        for f in dist.files or []:
            if f.as_posix().endswith(wanted):
                candidate = Path(dist.locate_file(f)).resolve()
                if candidate.is_file():
                    return candidate
        direct = json.loads(dist.read_text("direct_url.json") or "{}")
        url = urlparse(direct.get("url", ""))
        if url.scheme == "file" and direct.get("dir_info", {}).get("editable"):
            candidate = Path(unquote(url.path)) / wanted
            if candidate.is_file():
                return candidate
    except (PackageNotFoundError, OSError, ValueError):
        pass
    return here
