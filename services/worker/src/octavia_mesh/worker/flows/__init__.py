"""Provider flows: tasks with compensating reverts, run by a small engine that persists its progress."""
