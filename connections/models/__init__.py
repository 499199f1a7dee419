from .audience import Audience, Subscription
from .connection import Connection
from .delivery import Delivery
from .erasure import ErasureCall, ErasureRecord, SuppressedIdentifier
from .inbound import FirehoseMessage, InboundToken
from .outbox import Forward
from .profile import Membership, Profile
from .resync import ResyncRun

__all__ = [
    "Audience",
    "Connection",
    "Delivery",
    "ErasureCall",
    "ErasureRecord",
    "FirehoseMessage",
    "Forward",
    "InboundToken",
    "Membership",
    "Profile",
    "ResyncRun",
    "Subscription",
    "SuppressedIdentifier",
]
