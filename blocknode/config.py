"""The block node's config: ``tessera.config.BlockConfig`` plus the background loops' pacing.

Each field is a flag and a ``TESSERA_*`` variable like every other (``--repair-interval``,
``TESSERA_REPAIR_INTERVAL``). Rates and the down grace live in ``BlockConfig`` already
(``--rebalance-rate-mb``, ``--scrub-rate-mb``, ``--down-grace``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Self

from tessera.config import BlockConfig, ConfigError


@dataclass(frozen=True)
class BlockNodeConfig(BlockConfig):
    """A block node with its replication, decommission and scrubbing loops."""

    repair_interval: float = field(
        default=60.0,
        metadata={
            "help": "seconds between replication passes (hint delivery, rebalance, anti-entropy);"
            " a ring change or a node coming back starts one at once"
        },
    )
    scrub_interval: float = field(
        default=3600.0,
        metadata={"help": "seconds the scrubber rests after re-hashing every chunk once"},
    )

    def validated(self) -> Self:
        """Check the pacing on top of ``BlockConfig``'s checks."""
        super().validated()
        if self.repair_interval <= 0 or self.scrub_interval <= 0:
            raise ConfigError("--repair-interval and --scrub-interval must be positive")
        if self.down_grace < 0:
            raise ConfigError("--down-grace must be >= 0")
        return self
