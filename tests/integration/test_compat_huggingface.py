"""The Hugging Face Inference API at /models/{id}, driven by huggingface_hub; real model, speech."""

from __future__ import annotations

import base64
import json
import urllib.error
import urllib.request
from collections.abc import Iterator

import pytest
from huggingface_hub import InferenceClient
from huggingface_hub.errors import HfHubHTTPError

from tests.conftest import reference, speech_path, wer
from tests.integration.conftest import RunningServer, start_server, stop_server
from tests.support.compat import CLIP, TOKEN

pytestmark = pytest.mark.model
MODEL = "openai/whisper-large-v3"  # what the task page's snippet names


@pytest.fixture(scope="module")
def compat_server() -> Iterator[RunningServer]:
    running = start_server("--token", TOKEN, name="compat-hf")
    yield running
    stop_server(running)


def model_url(server: RunningServer, model: str = MODEL) -> str:
    return f"http://127.0.0.1:{server.port}/models/{model}"


def post(url: str, body: bytes, headers: dict[str, str]) -> tuple[int, dict[str, str], bytes]:
    request = urllib.request.Request(url, data=body, headers=headers, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=120) as r:
            return r.status, dict(r.headers), r.read()
    except urllib.error.HTTPError as e:
        return e.code, dict(e.headers), e.read()


def test_inference_client_transcribes_a_file(compat_server: RunningServer) -> None:
    client = InferenceClient(model=model_url(compat_server), token=TOKEN)
    output = client.automatic_speech_recognition(speech_path(CLIP))
    assert wer(reference(CLIP), output.text) <= 0.1, output.text
    assert output.chunks is None


def test_inference_client_with_timestamps(compat_server: RunningServer) -> None:
    """With parameters the client sends JSON with base64 inputs; chunks come back."""
    client = InferenceClient(model=model_url(compat_server), token=TOKEN)
    output = client.automatic_speech_recognition(
        speech_path(CLIP), extra_body={"return_timestamps": True})
    assert output.chunks is not None and len(output.chunks) >= 2
    assert wer(reference(CLIP), " ".join(c.text for c in output.chunks)) <= 0.1
    starts = [c.timestamp[0] for c in output.chunks]
    assert starts == sorted(starts) and all(c.timestamp[0] < c.timestamp[1]
                                             for c in output.chunks)
    assert output.chunks[-1].timestamp[1] <= 11.1
    words = client.automatic_speech_recognition(
        speech_path(CLIP), extra_body={"return_timestamps": "word"})
    assert words.chunks is not None and len(words.chunks) >= 15
    assert words.chunks[0].text.strip(",.").lower() == "and"


def test_the_task_pages_requests_snippet(compat_server: RunningServer) -> None:
    """data=audio bytes with a bearer token; the model answering says which it is."""
    audio = speech_path(CLIP).read_bytes()
    status, headers, body = post(model_url(compat_server), audio,
                                 {"Authorization": f"Bearer {TOKEN}",
                                  "Content-Type": "audio/wav"})
    assert status == 200, body
    assert set(json.loads(body)) == {"text"}
    assert headers["X-Requested-Model"] == MODEL
    assert headers["X-Captioncast-Model"] == "tiny.en"
    status, _, body = post(model_url(compat_server), json.dumps(
        {"inputs": base64.b64encode(audio).decode()}).encode(),
        {"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"})
    assert status == 200 and wer(reference(CLIP), json.loads(body)["text"]) <= 0.1


@pytest.mark.parametrize(("body", "content_type", "status", "says"), [
    (b"this is not audio", "audio/wav", 400, "audio"),
    (b"{not json", "application/json", 400, "JSON"),
    (b'{"inputs": "%%%"}', "application/json", 400, "base64"),
    (b'{"inputs": "AAAA", "parameters": {"top_k": 3}}', "application/json", 400, "top_k"),
    (b"", "audio/wav", 400, "empty"),
])
def test_bad_input_gets_hfs_error_shape(compat_server: RunningServer, body: bytes,
                                        content_type: str, status: int, says: str) -> None:
    got, _, answer = post(model_url(compat_server), body,
                          {"Authorization": f"Bearer {TOKEN}", "Content-Type": content_type})
    assert got == status, answer
    error = json.loads(answer)
    assert set(error) == {"error"} and says in error["error"], error


def test_errors_reach_the_client_as_its_http_errors(compat_server: RunningServer) -> None:
    with pytest.raises(HfHubHTTPError) as caught:
        InferenceClient(model=model_url(compat_server), token="wrong") \
            .automatic_speech_recognition(b"RIFF")
    assert caught.value.response.status_code == 401
    with pytest.raises(HfHubHTTPError) as caught:
        InferenceClient(model=model_url(compat_server), token=TOKEN) \
            .automatic_speech_recognition(b"not audio at all")
    assert caught.value.response.status_code == 400
    assert "audio" in json.loads(caught.value.response.content)["error"]
