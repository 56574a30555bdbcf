"""The server's options: one frozen dataclass tree, built once (captioncast.config), passed down.

Options of a part live beside it (`PolicyOptions` in core, `CapacityOptions` in engine,
`StoreOptions` in fanout/archive.py, `MqttOptions` in fanout/mqtt.py); this module
composes them. The transport's own live here, because the modules that use them also
use the server context, which holds these options.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path

from captioncast.core.channel import ChannelOptions
from captioncast.core.decoding import DecodeThresholds
from captioncast.core.options import PolicyOptions
from captioncast.core.replay import DEFAULT_REPLAY_EVENTS
from captioncast.engine.capacity import CapacityOptions
from captioncast.engine.decode_options import DecodeOptions
from captioncast.engine.scheduler import Budgets
from captioncast.fanout.archive import StoreOptions as StoreOptions
from captioncast.fanout.mqtt import MqttOptions
from captioncast.fanout.output_sink import OutputOptions as OutputOptions
from captioncast.speakers.options import SpeakerOptions
from captioncast.text.profanity import ProfanityOptions
from captioncast.transport.security import SecurityOptions


@dataclass(frozen=True)
class TranscribeOptions:
    max_upload_bytes: int = 1024 * 1024 * 1024  # 1 GiB: hours of compressed audio
    max_concurrent: int = 4  # files transcribed at once; more get 503 (each waits on the model)


@dataclass(frozen=True)
class ShutdownOptions:
    timeout_s: float = 10.0  # from the signal to the process exiting
    close_timeout_s: float = 3.0  # a peer that does not answer our close frame is cut

    def drain_s(self, after_s: float = 0.0) -> float:
        """Time for streams to finalize: what is left once the closing handshakes and
        `after_s` (what runs after the drain: the MQTT bridges' last messages) are allowed
        for; never less than 60% of the timeout."""
        reserve = min(self.close_timeout_s + 1.0 + after_s, self.timeout_s * 0.4)
        return max(0.0, self.timeout_s - reserve)


@dataclass(frozen=True)
class ServerOptions:
    host: str = "127.0.0.1"
    port: int = 8765
    model: str = "tiny.en"
    device: str = "auto"
    compute_type: str = "auto"
    cpu_threads: int = 0  # per decode worker; 0: the cores shared out between workers
    decode_workers: int = 0  # decodes at once; 0: 2 on a GPU, min(2, cores) on the CPU
    decode_batch: int = 0  # live decodes per model call; 0: 8 on a GPU, 1 on the CPU
    language: str | None = None  # default for streams that do not say; None: en or auto
    max_sessions: int = 64
    max_frame_bytes: int = 64 * 1024
    idle_timeout_s: float = 60.0  # no audio and no keepalive for this long closes a session
    send_timeout_s: float = 30.0  # a client that reads nothing for this long is dropped
    # A stream whose connection drops (without eos) waits this long for the client to
    # resume it (PROTOCOL "Resuming"); 0: a dropped stream ends at once.
    resume_window_s: float = 600.0
    max_session_s: float | None = None  # None: unlimited; at the limit: finals, end, close
    replay_events: int = DEFAULT_REPLAY_EVENTS  # events a resumed client can be replayed
    model_cache: Path | None = None
    policy: PolicyOptions = field(default_factory=PolicyOptions)
    # The decode thresholds in `decode` are not read: `decoder_options` takes the policy's.
    decode: DecodeOptions = field(default_factory=DecodeOptions)
    scheduler: Budgets = field(default_factory=Budgets)
    channels: ChannelOptions = field(default_factory=ChannelOptions)
    mqtt: MqttOptions | None = None
    outputs: tuple[OutputOptions, ...] = ()  # checked when built (captioncast.config)
    transcribe: TranscribeOptions = field(default_factory=TranscribeOptions)
    capacity: CapacityOptions = field(default_factory=CapacityOptions)
    security: SecurityOptions = field(default_factory=SecurityOptions)
    shutdown: ShutdownOptions = field(default_factory=ShutdownOptions)
    store: StoreOptions = field(default_factory=StoreOptions)
    # A peer that answers no ping within ping_timeout_s is dropped; None: no pings.
    ping_interval_s: float | None = 20.0
    ping_timeout_s: float | None = 20.0
    write_limit: int = 32 * 1024  # bytes buffered per connection before a send waits
    diarize: bool = False  # label finals with who spoke when a stream does not say
    speakers: SpeakerOptions = field(default_factory=SpeakerOptions)
    # Masked captions when a stream or file does not say (profanity_filter=).
    profanity: ProfanityOptions = field(default_factory=ProfanityOptions)

    @property
    def decoder_options(self) -> DecodeOptions:
        """`decode` with the policy's thresholds: the engine retries a decode by the same
        tests that the policy drops a final by, so they are one setting."""
        thresholds = {f.name: getattr(self.policy, f.name)
                      for f in dataclasses.fields(DecodeThresholds)}
        return dataclasses.replace(self.decode, **thresholds)
