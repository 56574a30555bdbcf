"""A live or file session driving the core: admission, registry, timers, coalescing."""
