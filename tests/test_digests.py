"""A folder SAE's weights digest is remembered in the user cache and recomputed when the file changes."""

from __future__ import annotations

import hashlib
import os

import pytest

from runtime.store import digests


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("SAGEC_CACHE_DIR", str(tmp_path / "cache"))
    return tmp_path / "cache"


def test_the_digest_is_the_file_sha256_and_is_remembered(tmp_path, cache, monkeypatch):
    weights = tmp_path / "sae_weights.safetensors"
    weights.write_bytes(b"first weights")
    assert digests.file_sha256(weights) == hashlib.sha256(b"first weights").hexdigest()

    def unread(path):
        raise AssertionError(f"{path} was hashed again")

    monkeypatch.setattr(digests, "sha256_file", unread)
    assert digests.file_sha256(weights) == hashlib.sha256(b"first weights").hexdigest()


def test_a_rewritten_file_or_a_damaged_memo_is_hashed_again(tmp_path, cache):
    weights = tmp_path / "w.bin"
    weights.write_bytes(b"one")
    digests.file_sha256(weights)
    weights.write_bytes(b"two")  # same size, new contents
    stat = weights.stat()
    os.utime(weights, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000))
    assert digests.file_sha256(weights) == hashlib.sha256(b"two").hexdigest()
    for memo in (cache / "digests").iterdir():
        memo.write_text("garbage")
    assert digests.file_sha256(weights) == hashlib.sha256(b"two").hexdigest()
