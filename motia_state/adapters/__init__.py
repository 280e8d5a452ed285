"""Storage adapters: memory (default), file, Redis, and the factory."""
