"""WebSocket wire bytes for the load generator, built once per test.

The load generator must cost far less CPU than the server it measures, so nothing here runs
per message: the upgrade request and the masked client frames are pre-built bytes (fixed
masking key, payload masked once), and the server's frames are only sized, never decoded.
"""

import base64
import hashlib

OP_CONT = 0x0
OP_TEXT = 0x1
OP_BINARY = 0x2
OP_CLOSE = 0x8
OP_PING = 0x9
OP_PONG = 0xA

MASK_KEY = b"\x37\xfa\x21\x3d"  # fixed: RFC 6455 wants it unpredictable, a benchmark doesn't
HANDSHAKE_KEY = "dGhlIHNhbXBsZSBub25jZQ=="  # the RFC 6455 sample nonce
_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"


def accept_token(key: str = HANDSHAKE_KEY) -> bytes:
    """Return the ``Sec-WebSocket-Accept`` value a correct server answers to ``key``."""
    return base64.b64encode(hashlib.sha1(key.encode() + _GUID).digest())


def upgrade_request(host: str, port: int, path: str) -> bytes:
    """Return the HTTP/1.1 upgrade request, offering no extension (compression stays off)."""
    return (
        f"GET {path} HTTP/1.1\r\n"
        f"Host: {host}:{port}\r\n"
        "Upgrade: websocket\r\n"
        "Connection: Upgrade\r\n"
        f"Sec-WebSocket-Key: {HANDSHAKE_KEY}\r\n"
        "Sec-WebSocket-Version: 13\r\n"
        "\r\n"
    ).encode("ascii")


def mask(payload: bytes, key: bytes = MASK_KEY) -> bytes:
    """XOR ``payload`` with the repeated 4-byte ``key`` (one big-int XOR: fast even for MiBs)."""
    n = len(payload)
    if n == 0:
        return b""
    stream = (key * (n // 4 + 1))[:n]
    return (int.from_bytes(payload, "big") ^ int.from_bytes(stream, "big")).to_bytes(n, "big")


def client_frame(opcode: int, payload: bytes) -> bytes:
    """Return one complete masked client frame (FIN set) carrying ``payload``."""
    n = len(payload)
    if n < 126:
        header = bytes((0x80 | opcode, 0x80 | n))
    elif n < 1 << 16:
        header = bytes((0x80 | opcode, 0x80 | 126)) + n.to_bytes(2, "big")
    else:
        header = bytes((0x80 | opcode, 0x80 | 127)) + n.to_bytes(8, "big")
    return header + MASK_KEY + mask(payload)


def close_frame(code: int = 1000) -> bytes:
    """Return a masked close frame with ``code`` and no reason."""
    return client_frame(OP_CLOSE, code.to_bytes(2, "big"))
