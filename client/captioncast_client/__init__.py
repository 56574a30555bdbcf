"""captioncast clients: stream a file or a microphone to a captioncast server, print captions."""

__version__ = "0.1.0"
