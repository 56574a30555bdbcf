"""Where a channel's events go: the hub and its viewers, the store archive, outputs, MQTT."""
