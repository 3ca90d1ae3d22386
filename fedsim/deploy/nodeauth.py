"""SuperNode authentication keys (Flower's node auth).

With ``flower-superlink --enable-supernode-auth`` (TLS required) a SuperNode may connect
only when its public key was registered first with ``flwr supernode register PUBLIC_KEY
<connection>``; the SuperNode proves it holds the private key by signing every Fleet
request (``flower-supernode --auth-supernode-private-key``).  Keys are EC on a NIST curve
(P-384 here) in OpenSSH format, what ``ssh-keygen -t ecdsa -b 384 -N ""`` writes.  Each
party makes its own pair and sends only the public key to the SuperLink's operator.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class NodeKeys:
    private: Path  # stays on the SuperNode's machine
    public: Path  # registered at the SuperLink


def write_node_keys(out_dir: str | Path, name: str) -> NodeKeys:
    """Write ``<name>`` (private, mode 600) and ``<name>.pub`` under ``out_dir``."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    if not name or "/" in name or name.startswith("."):
        raise ValueError(f"name {name!r}: a plain file name is required (no '/', not hidden)")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    key = ec.generate_private_key(ec.SECP384R1())
    private = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH,
                                serialization.NoEncryption())
    public = key.public_key().public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH)
    keys = NodeKeys(out / name, out / f"{name}.pub")
    fd = os.open(keys.private, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(private)
    keys.public.write_bytes(public + f" fedsim-{name}\n".encode())
    return keys
