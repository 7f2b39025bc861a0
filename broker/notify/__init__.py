"""Team notifications: subscriptions, fan-out of `handlers.notices.Notice` values into one delivery per
(notice, subscription), and the rq job that delivers them (Standard Webhooks signatures for webhooks,
apprise for chat channels), with retries, dead deliveries, replay, auto-disable and SSRF checks.

Entry point for the worker: `broker.notify.fanout.emit(redis, settings, notices)`."""
