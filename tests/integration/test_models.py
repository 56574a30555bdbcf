"""Model resolution: the bundled tiny.en, and multilingual base assembled from two packages."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from captioncast.engine.models import BASE_PARTS, assemble_base, resolve_model
from captioncast_client.audio_files import decode_pcm, rechunk, silence
from captioncast_client.streaming import stream, stream_url
from tests.conftest import speech_path
from tests.integration.conftest import start_server, stop_server

pytestmark = pytest.mark.model


def test_default_model_is_the_bundled_tiny_en() -> None:
    location = resolve_model("tiny.en")
    assert location.bundled and location.name == "tiny.en"
    assert (Path(location.path) / "model.bin").stat().st_size > 10_000_000


def test_base_is_assembled_once_checked_and_reused(tmp_path: Path) -> None:
    import importlib

    parts = [Path(importlib.import_module(m).__file__ or "").parent / "data" / name
             for m, name in BASE_PARTS]
    expected = sum(p.stat().st_size for p in parts)
    target = assemble_base(tmp_path)
    assert target is not None
    model_bin = target / "model.bin"
    assert model_bin.stat().st_size == expected
    with model_bin.open("rb") as f, parts[1].open("rb") as second:
        f.seek(parts[0].stat().st_size)
        assert f.read(4096) == second.read(4096)  # part2 follows part1 byte for byte
    stamp = model_bin.stat().st_mtime_ns
    assert assemble_base(tmp_path) == target and model_bin.stat().st_mtime_ns == stamp
    with model_bin.open("r+b") as f:  # a short file (an interrupted copy) is rebuilt
        f.truncate(1000)
    assemble_base(tmp_path)
    assert model_bin.stat().st_size == expected


def test_a_directory_without_a_model_is_refused(tmp_path: Path) -> None:
    from captioncast.errors import ModelError

    with pytest.raises(ModelError, match=r"model\.bin"):
        resolve_model(str(tmp_path))


async def test_base_detects_the_language_per_utterance_and_translates(tmp_path: Path) -> None:
    server = await asyncio.to_thread(start_server, "--model", "base", "--model-cache",
                                     str(tmp_path), name="base")
    try:
        audio = [*rechunk(decode_pcm(str(speech_path("leopard_de"))), 3200), silence(1.0)]
        auto = await stream(stream_url(server.url, language="auto"), audio, realtime=False)
        assert auto.events[0]["model"] == "base"
        finals = [f for f in auto.finals if f["text"]]
        assert finals and all(f["language"] == "de" for f in finals)
        heard = auto.text.lower()
        assert "portal" in heard and "raum" in heard and "genutzt" in heard, heard
        english = await stream(stream_url(server.url, language="de", task="translate"), audio,
                               realtime=False)
        text = english.text.lower()
        assert english.finals and ("portal" in text or "hall" in text or "room" in text), text
    finally:
        await asyncio.to_thread(stop_server, server)


class GenerateSpy:
    """CTranslate2's Whisper, with the beam and batch size of each generate noted."""

    def __init__(self, inner: object) -> None:
        self.inner = inner
        self.calls: list[tuple[int, int]] = []

    def __getattr__(self, name: str) -> object:
        return getattr(self.inner, name)

    def generate(self, features: object, prompts: list[list[int]], **kwargs: object) -> object:
        self.calls.append((int(kwargs["beam_size"]), len(prompts)))  # type: ignore[call-overload]
        return self.inner.generate(features, prompts, **kwargs)  # type: ignore[attr-defined]


def test_a_busy_final_decodes_with_a_narrower_beam_and_keeps_the_words() -> None:
    """Under a backlog, when asked to, the scheduler asks finals for effort "busy" (greedy)."""
    from dataclasses import replace

    from captioncast.core.decoding import DecodeRequest
    from captioncast.engine.decode_options import DecodeOptions
    from captioncast.engine.models import plan_device
    from captioncast.engine.whisper import WhisperDecoder
    from tests.conftest import read_wav, reference, wer

    decoder = WhisperDecoder(resolve_model("tiny.en"), plan_device("cpu", "int8", 1),
                             cpu_threads=1, options=DecodeOptions())
    spy = GenerateSpy(decoder.model.model)
    decoder.model.model = spy  # type: ignore[assignment]
    name = "libri_dev_2412-153948-0000"
    full = DecodeRequest(1, "final", 0, read_wav(name), language="en", word_timestamps=True)
    results = {effort: decoder.decode(replace(full, effort=effort))
               for effort in ("full", "busy")}
    assert [beam for beam, _ in spy.calls] == [5, 1]
    for result in results.values():
        assert wer(reference(name), result.text) < 0.15, result.text
        assert result.words and result.words[-1].end <= full.duration


def test_a_batch_decodes_as_each_request_would_alone() -> None:
    """The GPU path (one encode and one generate for several sessions' finals), on the CPU."""
    from captioncast.core.decoding import DecodeRequest
    from captioncast.engine.models import plan_device
    from captioncast.engine.whisper import WhisperDecoder
    from tests.conftest import read_wav, reference, wer

    decoder = WhisperDecoder(resolve_model("tiny.en"), plan_device("cpu", "int8", 1, 4),
                             cpu_threads=1)
    names = ["whisper_jfk", "libri_test_61-70968-0002", "libri_dev_1272-128104-0000",
             "libri_test_61-70968-0000"]
    # no earlier text (decoded apart), and earlier texts of different lengths (cut to one)
    prompts = ["", "Good evening.", "Good evening. Here is the news at nine.", ""]
    requests = [DecodeRequest(i, "final", i, read_wav(n), language="en",
                              word_timestamps=i != 1, prompt=prompts[i])
                for i, n in enumerate(names)]
    spy = GenerateSpy(decoder.model.model)
    decoder.model.model = spy  # type: ignore[assignment]
    batched = decoder.decode_batch(requests)
    assert sorted(size for _, size in spy.calls) == [2, 2]  # two calls of two, none alone
    alone = [decoder.decode(r) for r in requests]
    for name, b, a, r in zip(names, batched, alone, requests, strict=True):
        assert wer(reference(name), b.text) < 0.15, b.text
        assert wer(a.text, b.text) <= 0.1, (a.text, b.text)
        assert bool(b.words) == r.word_timestamps
        if b.words:
            assert b.words[-1].end <= r.duration + 0.01
            assert abs(b.words[-1].end - a.words[-1].end) < 0.3
