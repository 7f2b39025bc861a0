"""The I/O side of the webhook broker: web app, Redis store and queue, workers, executors, CLI."""
