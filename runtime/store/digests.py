"""The sha256 of a large local file, remembered by what the file system says of it.

A folder SAE's results name its weights' sha256 (provenance), and hashing a wide SAE's weights
costs about a second per GB each time it is loaded (a 2^20-latent SAE on a 2304-wide model is
19 GB). The digest is kept in the user cache (runtime/store/userdirs.py) under the file's
resolved path, size, modification time and inode: a file rewritten in place, replaced or moved
is hashed again.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

from runtime.store import atomic
from runtime.store.cache import sha256_file
from runtime.store.userdirs import cache_dir


def file_sha256(path: str | os.PathLike[str]) -> str:
    path = Path(path).resolve()
    st = path.stat()
    stamp = f"{path}|{st.st_size}|{st.st_mtime_ns}|{st.st_ino}"
    memo = cache_dir() / "digests" / f"{hashlib.sha256(stamp.encode()).hexdigest()[:32]}.txt"
    digest = _remembered(memo, stamp)
    if digest is None:
        digest = sha256_file(path)
        atomic.write_text(memo, f"{stamp}\n{digest}\n")
    return digest


def _remembered(memo: Path, stamp: str) -> str | None:
    """The digest `memo` keeps for `stamp`; None when there is none, it names another stamp, or
    it is unreadable (then it is hashed again and rewritten)."""
    try:
        lines = memo.read_text(encoding="utf-8").split("\n")
    except OSError:
        return None
    if len(lines) >= 2 and lines[0] == stamp and len(lines[1]) == 64:
        return lines[1]
    return None
