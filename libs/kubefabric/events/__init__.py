"""The event bus between shards and watch-hubs: NATS JetStream (DESIGN §5)."""
