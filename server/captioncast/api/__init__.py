"""Sans-I/O translators, one per wire format: client messages in, session commands out.

Session events in, wire messages out. Nothing here imports asyncio or websockets
(tests/unit/test_imports.py checks it): the sockets are transport's.
"""
