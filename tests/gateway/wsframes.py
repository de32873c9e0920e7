"""Client WebSocket frames built by hand, for frames no client library sends (unmasked ones)."""

from __future__ import annotations

import os
import struct

__all__ = ["client_frame"]


def client_frame(payload: bytes, *, masked: bool = True, opcode: int = 0x1) -> bytes:
    """One final frame carrying ``payload``, masked with a random key unless ``masked=False``."""
    n = len(payload)
    mask_bit = 0x80 if masked else 0
    if n < 126:
        head = struct.pack("!BB", 0x80 | opcode, mask_bit | n)
    elif n < 65536:
        head = struct.pack("!BBH", 0x80 | opcode, mask_bit | 126, n)
    else:
        head = struct.pack("!BBQ", 0x80 | opcode, mask_bit | 127, n)
    if not masked:
        return head + payload
    key = os.urandom(4)
    return head + key + bytes(b ^ key[i % 4] for i, b in enumerate(payload))
