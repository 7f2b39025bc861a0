"""Executors: one module per side effect of the GitOps core. Each takes planned values and an explicit
client (Kubernetes wrapper, git work dir, Argo CD REST), never reads settings from the environment, and
raises `TransientError`/`PermanentError` for the worker to retry or give up."""
