"""Pure translation: bytes and headers in, verified and parsed events out, then events plus a catalog
snapshot into planned actions. Nothing in this package does I/O (import-linter enforces it): no sockets,
no Redis, no Kubernetes, no clock reads that a caller cannot override."""
