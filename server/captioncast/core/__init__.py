"""The streaming core: pure state machines with no sockets, threads, clocks or models."""
