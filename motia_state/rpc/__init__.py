"""The RPC layer: NDJSON frames, the handler table, and a peer over a pipe."""

from .frames import LineReader, decode_frame, encode_error, encode_request, encode_response
from .handlers import CallContext, HandlerTable, state_handlers
from .peer import Peer, PeerClosedError

__all__ = [
    "CallContext",
    "HandlerTable",
    "LineReader",
    "Peer",
    "PeerClosedError",
    "decode_frame",
    "encode_error",
    "encode_request",
    "encode_response",
    "state_handlers",
]
