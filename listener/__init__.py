"""PostgreSQL LISTEN/NOTIFY fan-out: one connection per database, bounded coalescing subscriber queues.

Knows DSNs, channels, topics and subscribers only; depends on asyncpg and the standard library.
"""

from listener.notifier import DsnStats, Notifier
from listener.subscription import CoalescingQueue, Event, EventKind, Outcome, Subscription, SubscriptionClosed

__all__ = [
    "CoalescingQueue",
    "DsnStats",
    "Event",
    "EventKind",
    "Notifier",
    "Outcome",
    "Subscription",
    "SubscriptionClosed",
]
