"""The multilingual `base` model on the non-English recordings: detection, text, translation.

Bounds are per recording, from what bench/languages_bench.py measured (bench/RESULTS.md)
with room for thread-count noise: WER for languages written with spaces, CER for
zh/ja/ko, both normalized as the bench does.
"""

from __future__ import annotations

import csv
import json
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import jiwer
import numpy as np
import pytest
from whisper_normalizer.basic import BasicTextNormalizer

from captioncast_client.streaming import stream, stream_url
from tests.conftest import SPEECH, read_wav, speech_path
from tests.integration.conftest import RunningServer, start_server, stop_server

pytestmark = pytest.mark.model

CHARACTER_SCRIPTS = ("zh", "ja", "ko")
DEFAULT_BOUND = 0.40  # measured at most 0.32 on the others (bench/RESULTS.md)
# Recordings the base model finds hard: measured (HTTP file route) and the bound.
BOUND = {
    "speechrecognition_chinese": 0.6,  # 0.40: five characters, 砸 heard as 扎, 腳 traditional
    "funasr_zh_asr_example": 0.5,  # 0.11, or 0.42 when base answers in traditional characters
    "deepspeech_ru": 0.5,  # 0.22-0.44: 9 words, "должен был быть" heard as "должно быть"
    "cv_ja_24511055": 0.5,  # 0.37: 真っ昼間なのに heard as katakana
    "leopard_it": 0.5,  # 0.36: "nacquero anche" heard as "nacque rank"
}
# Whisper writes spoken numbers as digits; the references spell them out.
SWEDISH_DIGITS = {"1": "en", "2": "två", "3": "tre", "4": "fyra", "5": "fem", "6": "sex",
                  "7": "sju", "8": "åtta"}


def non_english() -> list[tuple[str, str, str]]:
    with (SPEECH / "manifest.tsv").open(encoding="utf-8") as f:
        return [(r["id"], r["language"], r["transcript"])
                for r in csv.DictReader(f, delimiter="\t") if r["language"] != "en"]


def error_rate(language: str, ref: str, hyp: str) -> float:
    normalize = BasicTextNormalizer()
    ref, hyp = normalize(ref).strip(), normalize(hyp).strip()
    if language in CHARACTER_SCRIPTS:
        return float(jiwer.cer(ref.replace(" ", ""), hyp.replace(" ", "")))
    return float(jiwer.wer(" ".join(ref.split()), " ".join(hyp.split())))


@pytest.fixture(scope="module")
def base_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    running = start_server("--model", "base", "--model-cache",
                           str(tmp_path_factory.mktemp("models")), name="base-languages")
    yield running
    stop_server(running)


def transcribe(server: RunningServer, name: str, **query: str) -> dict[str, object]:
    params = "&".join(f"{k}={v}" for k, v in query.items())
    request = urllib.request.Request(f"http://127.0.0.1:{server.port}/v1/transcribe?{params}",
                                     data=speech_path(name).read_bytes(), method="POST")
    with urllib.request.urlopen(request, timeout=300) as r:
        answer: dict[str, object] = json.loads(r.read())
    return answer


@pytest.mark.parametrize(("name", "language", "ref"), non_english(),
                         ids=[r[0] for r in non_english()])
def test_language_is_detected_and_the_text_is_close(base_server: RunningServer, name: str,
                                                    language: str, ref: str) -> None:
    answer = transcribe(base_server, name, language="auto")
    segments = answer["segments"]
    assert isinstance(segments, list) and segments
    assert answer["language"] == language
    assert all(s["language"] == language for s in segments), segments
    text = str(answer["text"])
    if language == "sv":
        text = " ".join(SWEDISH_DIGITS.get(w.strip(",."), w) for w in text.split())
    rate = error_rate(language, ref, text)
    assert rate <= BOUND.get(name, DEFAULT_BOUND), (rate, answer["text"])


def test_a_fixed_language_is_kept(base_server: RunningServer) -> None:
    answer = transcribe(base_server, "leopard_it", language="it")
    assert answer["language"] == "it"
    assert error_rate("it", "Sempre alla radio nacquero anche alcune sue canzoni o meglio "
                      "ritmi.", str(answer["text"])) <= DEFAULT_BOUND


@pytest.mark.parametrize(("name", "expected"), [
    ("leopard_de", ("room", "hall", "portal")),
    ("leopard_es", ("sand", "white", "grain")),
])
# base translates German and Spanish well enough to check words; its French, Portuguese and
# Swedish translations lose the content words ("the holes of the holes", "a velha gun").
def test_translate_gives_english(base_server: RunningServer, name: str,
                                 expected: tuple[str, ...]) -> None:
    answer = transcribe(base_server, name, task="translate", language="auto")
    text = str(answer["text"]).lower()
    assert sum(word in text for word in expected) >= 2, text
    assert text.isascii(), text


async def test_a_live_stream_detects_the_language_of_each_utterance(
        base_server: RunningServer) -> None:
    gap = np.zeros(24000, dtype=np.float32)  # 1.5 s: each recording is its own utterance
    parts = [read_wav("leopard_es"), gap, read_wav("leopard_ja"), gap, read_wav("leopard_fr"),
             gap]
    pcm = (np.concatenate(parts) * 32767).astype("<i2").tobytes()
    chunks = [pcm[i:i + 3200] for i in range(0, len(pcm), 3200)]
    result = await stream(stream_url(base_server.url, language="auto"), chunks,
                          realtime=False)
    spoken = [f for f in result.finals if f["text"]]
    languages = [f["language"] for f in spoken]
    # One language per utterance, in order; a long sentence may be two finals.
    assert [lang for i, lang in enumerate(languages)
            if i == 0 or languages[i - 1] != lang] == ["es", "ja", "fr"], spoken


def test_manifest_has_the_languages_the_issue_names() -> None:
    assert {r[1] for r in non_english()} >= {"es", "de", "fr", "it", "pt", "sv", "ru", "ja",
                                              "ko", "zh"}
    assert Path(speech_path("leopard_ja")).is_file()
