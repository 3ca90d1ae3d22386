"""The federation key: the clients' shared secret for keyed transforms (permutation,
random_projection).

The server must never hold it nor be able to derive it, so it never comes from the
scenario, its seed, the run config or any message.  Where a ClientApp finds it:

1. simulation (``fedsim run``): the driver hands it to the ClientApp factory only -- a
   fresh random key per run, or the key file a user fixes for reproducibility
   (``--federation-key-file``);
2. deployment / ``flwr run``: the SuperNode's node config ``federation-key-file``, else the
   file named by ``$FEDSIM_FEDERATION_KEY_FILE`` on the client's machine.

A key file holds one integer (decimal or ``0x`` hex); :func:`write_key_file` makes one.
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path
from typing import Any

NODE_KEY = "federation-key-file"
KEY_ENV = "FEDSIM_FEDERATION_KEY_FILE"


def new_key() -> int:
    """A fresh 63-bit key from the operating system's CSPRNG."""
    return secrets.randbits(63)


def read_key_file(path: str | Path) -> int:
    """The key stored in ``path``; a ValueError names the file and the expected format."""
    p = Path(path).expanduser()
    try:
        text = p.read_text(encoding="utf-8").strip()
    except OSError as err:
        raise ValueError(f"federation key file {p}: cannot be read ({err.strerror})") from None
    try:
        key = int(text, 0)
    except ValueError:
        raise ValueError(f"federation key file {p}: expected one integer (decimal or 0x hex)") from None
    if not 0 <= key < 2**63:
        raise ValueError(f"federation key file {p}: the key must be in [0, 2**63)")
    return key


def write_key_file(path: str | Path, key: int | None = None) -> int:
    """Write a (new) key readable by its owner only; returns it."""
    key = new_key() if key is None else key
    p = Path(path).expanduser()
    p.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(p, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(f"{key}\n")
    return key


def client_key(bound: int | None, node_config: dict[str, Any]) -> int | None:
    """The key this ClientApp uses: bound by the simulation driver, else the node's key file."""
    if bound is not None:
        return bound
    path = node_config.get(NODE_KEY) or os.environ.get(KEY_ENV)
    return read_key_file(str(path)) if path else None
