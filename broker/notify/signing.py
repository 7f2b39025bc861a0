"""Standard Webhooks signatures (the `standardwebhooks` library): `webhook-id`, `webhook-timestamp` and
`webhook-signature`, the latter a space-separated list of `v1,<base64 HMAC-SHA256>` (one per live secret,
which is how a rotation overlaps with no downtime)."""

from __future__ import annotations

import base64
import secrets
from collections.abc import Sequence
from datetime import datetime, timedelta

from standardwebhooks.webhooks import Webhook

from broker.notify.models import SigningSecret

SECRET_PREFIX = "whsec_"
SECRET_BYTES = 32  # the spec allows 24 to 64


def new_secret() -> str:
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(SECRET_BYTES)).decode()


def rotate(current: Sequence[SigningSecret], now: datetime, overlap_s: float) -> list[SigningSecret]:
    """A fresh secret first; every secret still live keeps signing for `overlap_s` more seconds at most,
    so receivers can switch to the new one while the old one still verifies."""
    until = now + timedelta(seconds=overlap_s)
    kept = [
        s.model_copy(update={"expires_at": min(s.expires_at or until, until)})
        for s in current
        if (s.expires_at is None or s.expires_at > now) and overlap_s > 0
    ]
    return [SigningSecret(value=new_secret(), created_at=now), *kept]


def sign(secret_values: Sequence[str], msg_id: str, timestamp: datetime, body: str) -> dict[str, str]:
    if not secret_values:
        raise ValueError("a webhook subscription needs at least one live signing secret")
    signatures = " ".join(Webhook(value).sign(msg_id, timestamp, body) for value in secret_values)
    return {
        "webhook-id": msg_id,
        "webhook-timestamp": str(int(timestamp.timestamp())),
        "webhook-signature": signatures,
    }
