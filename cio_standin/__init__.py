"""A local stand-in for Customer.io's Track API (SPEC §10). See ``server.py``."""

from .contract import validate_v1_identify_body, validate_v2_batch_body
from .model import Faults, RecordedRequest, Workspace
from .server import StandinServer

__all__ = [
    "Faults",
    "RecordedRequest",
    "StandinServer",
    "Workspace",
    "validate_v1_identify_body",
    "validate_v2_batch_body",
]
