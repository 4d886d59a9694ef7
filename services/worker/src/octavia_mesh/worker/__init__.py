"""The worker: applies provider commands taken from JetStream."""
