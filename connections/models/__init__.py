from .audience import Audience, Subscription
from .batch_delivery import BatchDelivery
from .connection import Connection
from .delivery import Delivery
from .erasure import ErasureCall, ErasureRecord, SuppressedIdentifier
from .imports import ImportRun
from .inbound import FirehoseMessage, InboundToken
from .observability import AlertEpisode, ConnectionStateChange, DeliveryTally, FirehoseCount, TallyMark
from .outbox import Forward
from .profile import Membership, Profile
from .resync import ResyncRun

__all__ = [
    "AlertEpisode",
    "Audience",
    "BatchDelivery",
    "Connection",
    "ConnectionStateChange",
    "Delivery",
    "DeliveryTally",
    "ErasureCall",
    "ErasureRecord",
    "FirehoseCount",
    "FirehoseMessage",
    "Forward",
    "ImportRun",
    "InboundToken",
    "Membership",
    "Profile",
    "ResyncRun",
    "Subscription",
    "SuppressedIdentifier",
    "TallyMark",
]
