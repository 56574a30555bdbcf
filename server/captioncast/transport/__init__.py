"""Network transports: the WebSocket server, HTTP routes, and what they wrap."""
