"""The errors a client raises: each is something a user can act on, with the CLI's exit code."""

from __future__ import annotations

from captioncast.protocol.events import Error
from captioncast_client.record import StreamResult


class ClientError(Exception):
    """Something a user can act on; `exit_code` follows the CLI's conventions."""

    def __init__(self, message: str, exit_code: int = 1) -> None:
        super().__init__(message)
        self.exit_code = exit_code
        # What a stream got before it failed (streaming.StreamResult), and the server's
        # `error` event when that is why.
        self.result: StreamResult | None = None
        self.event: Error | None = None


class SourceFailed(ClientError):
    """The audio source stopped mid-stream (a microphone unplugged, an unreadable file).

    What it gave before stopping was still captioned: `result` holds those finals.
    """


class ServerUnreachable(ClientError):
    """The network, TLS, or a server that is restarting: trying again later may work."""

    def __init__(self, message: str) -> None:
        super().__init__(message, exit_code=2)


class ServerRefused(ClientError):
    """The server said no (a token, a parameter, a limit): trying again will not help."""

    def __init__(self, message: str) -> None:
        super().__init__(message, exit_code=3)
