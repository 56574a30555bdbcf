import pytest

from captioncast.core.params import parse_control, parse_stream_params
from captioncast.errors import BadControlMessage, BadRequest


def test_defaults_follow_the_protocol() -> None:
    params = parse_stream_params({})
    assert params.sample_rate == 16000
    assert params.encoding == "pcm_s16le"
    assert params.channels == 1
    assert params.interim and params.words
    assert params.task == "transcribe"


def test_valid_parameters_are_typed() -> None:
    params = parse_stream_params({
        "sample_rate": "44100", "encoding": "pcm_f32le", "channels": "2", "language": "auto",
        "task": "translate", "channel": "show-1.main", "interim": "false", "words": "0",
        "prompt": "captioncast, Whisper",
    })
    assert params.sample_rate == 44100
    assert params.bytes_per_frame == 8
    assert params.language == "auto"
    assert params.interim is False and params.words is False
    assert params.channel == "show-1.main"


@pytest.mark.parametrize(
    ("query", "needle"),
    [
        ({"sample_rate": "7999"}, "sample_rate"),
        ({"sample_rate": "96000"}, "sample_rate"),
        ({"sample_rate": "fast"}, "integer"),
        ({"encoding": "mp3"}, "encoding"),
        ({"channels": "3"}, "channels"),
        ({"language": "english"}, "language"),
        ({"task": "summarize"}, "task"),
        ({"channel": "bad name!"}, "channel"),
        ({"channel": "x" * 65}, "channel"),
        ({"interim": "maybe"}, "interim"),
        ({"prompt": "p" * 501}, "prompt"),
        ({"model": "/etc/passwd"}, "unknown"),
        ({"resume": "../../x"}, "resume"),
    ],
)
def test_bad_parameters_are_refused_with_a_clear_message(query: dict[str, str],
                                                         needle: str) -> None:
    with pytest.raises(BadRequest) as caught:
        parse_stream_params(query)
    assert needle in caught.value.message
    assert caught.value.close_code == 1008


@pytest.mark.parametrize("kind", ["flush", "eos", "keepalive"])
def test_control_messages(kind: str) -> None:
    assert parse_control(f'{{"type":"{kind}"}}') == kind


@pytest.mark.parametrize("text", ["not json", "[1,2]", '{"type":"dance"}', "{}", '"eos"'])
def test_bad_control_messages_are_not_fatal(text: str) -> None:
    with pytest.raises(BadControlMessage) as caught:
        parse_control(text)
    assert caught.value.close_code is None
    assert caught.value.code == "bad_request"


def test_a_long_text_frame_is_not_a_control_message_and_is_not_echoed() -> None:
    from captioncast.core.params import MAX_CONTROL_CHARS
    from captioncast.errors import BadControlMessage

    with pytest.raises(BadControlMessage, match="not a control message"):
        parse_control('{"type":"' + "x" * MAX_CONTROL_CHARS + '"}')
    with pytest.raises(BadControlMessage) as caught:
        parse_control('{"type":"' + "y" * 1000 + '"}')
    assert len(caught.value.message) < 120


def test_profanity_filter_is_the_streams_say_or_the_servers_default() -> None:
    assert parse_stream_params({}).profanity_filter is None
    assert parse_stream_params({"profanity_filter": "true"}).profanity_filter is True
    assert parse_stream_params({"profanity_filter": "false"}).profanity_filter is False
    with pytest.raises(BadRequest, match="profanity_filter"):
        parse_stream_params({"profanity_filter": "mild"})
