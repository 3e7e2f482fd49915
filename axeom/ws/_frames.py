"""Frames in, messages out, for one server-side socket; sans-IO.

Wraps the websockets library's sans-IO ``Protocol`` (C-accelerated
unmasking, thorough RFC 6455 checks) and adds what it leaves to its caller:

- reassembly of fragmented messages into one ``str`` or ``bytes``;
- UTF-8 validation of text messages (invalid: close 1007);
- an outbox with a byte count, for backpressure and coalesced writes.

Close codes for broken input are decided here and only here: 1002 for a
protocol violation, 1007 for invalid UTF-8, 1009 for a message over
``max_message_size`` (the last two from the Protocol's own checks).

The common frame (final, unfragmented text or binary, masked, within the
size limit, not compressed) is parsed here directly, at a fraction of the
Protocol's cost. Uncompressed fragments are streamed here too: each one is
checked against the message's running total from its header alone (1009
before a byte of a payload that would pass ``max_message_size`` is kept)
and unmasked straight into the message, so a fragmented message costs its
own size and nothing more (through the Protocol it cost each frame buffered
whole, then copied twice). Every other frame (control frames, compressed
frames, anything malformed, anything while closing) goes through the
Protocol whole and one frame at a time, so its checks and close codes apply
unchanged and in frame order. Frame boundaries are tracked from the
headers, so the two paths never split a frame between them.
"""

from __future__ import annotations

import codecs
import logging
import struct
from typing import Any, cast

from websockets.extensions.base import Extension
from websockets.frames import Close, CloseCode, Frame, Opcode
from websockets.protocol import CLOSED, OPEN, Protocol, Side

from ._socket import SendStatus
from ._tally import TALLY

try:  # the C unmasking routine websockets itself uses; pure Python otherwise
    from websockets.speedups import apply_mask
except ImportError:  # pragma: no cover - wheels ship the extension
    from websockets.utils import apply_mask

__all__ = ["FrameConnection"]


class _QuietProtocolLogger(logging.LoggerAdapter):  # type: ignore[type-arg]
    """The Protocol's logger, with its INFO lines ("connection closed", once
    per connection, aborted ones included) moved to DEBUG: per-connection
    events are not worth a line each at the default level."""

    def log(self, level: int, msg: object, *args: object, **kwargs: object) -> None:
        super().log(logging.DEBUG if level == logging.INFO else level, msg, *args, **kwargs)  # type: ignore[arg-type]


_frames_logger = _QuietProtocolLogger(logging.getLogger("axeom.ws.frames"), {})

_TEXT, _BINARY, _CONT, _PONG = Opcode.TEXT, Opcode.BINARY, Opcode.CONT, Opcode.PONG
# RFC 6455 section 5.2: opcodes 0x3-0x7 and 0xB-0xF are reserved (1002 on sight).
_RESERVED_OPCODES = frozenset((*range(0x3, 0x8), *range(0xB, 0x10)))
_utf8_decoder = codecs.getincrementaldecoder("utf-8")
JOIN_LIMIT = 256 * 1024  # above this, buffers are gathered by the kernel, not copied
# Past JOIN_LIMIT, a buffer this large goes to the kernel as it is; smaller ones
# next to each other are still joined (few buffers per write: see _gathered).
GATHER_AS_IS = 64 * 1024
# A frame larger than this that has not fully arrived is unmasked as it comes
# (the fragment path) rather than buffered whole then unmasked: one copy
# instead of a growing buffer, a copy and an unmasked copy.
STREAM_ABOVE = 64 * 1024


def _frame_head(opcode: int, length: int) -> bytes:
    """Header of an unmasked, final, uncompressed frame (server to client)."""
    if length < 126:
        return bytes((0x80 | opcode, length))
    if length < 65536:
        return struct.pack("!BBH", 0x80 | opcode, 126, length)
    return struct.pack("!BBQ", 0x80 | opcode, 127, length)


class FrameConnection:
    """Protocol state, outbox and backpressure of one socket.

    ``receive(data)`` returns the complete messages that ``data`` finished;
    anything to write (pongs, close frames, queued messages) accumulates in
    ``outbox`` until the adapter takes it with ``take_output``. ``eof`` turns
    true when the TCP connection should be closed once the outbox is written.
    """

    __slots__ = (
        "_buffer",
        "_doomed",
        "_fast_receive",
        "_fast_send",
        "_fragments",
        "_frame_fin",
        "_frame_left",
        "_frame_mask",
        "_frame_offset",
        "_held",
        "_max_size",
        "_message",
        "_message_size",
        "_message_text",
        "_owed",
        "_protocol_fragment",
        "_text",
        "_utf8",
        "buffered",
        "close_started",
        "eof",
        "inflight",
        "limit",
        "outbox",
        "pong_seen",
        "protocol",
        "waiting",
        "wants_drain",
    )

    def __init__(
        self,
        *,
        max_message_size: int,
        backpressure_limit: int,
        extensions: list[Extension] | None = None,
    ) -> None:
        protocol = Protocol(
            Side.SERVER, state=OPEN, max_size=max_message_size, logger=_frames_logger
        )
        if extensions:
            protocol.extensions = list(extensions)
        self.protocol = protocol
        # Without extensions, outgoing frames are built here directly: the
        # same bytes as Protocol.send_*, at a fraction of the cost.
        self._fast_send = not extensions
        # Incoming uncompressed frames (RSV1 clear) never touch a deflate
        # context, so they take the fast path even when compression was
        # negotiated; compressed ones go to the Protocol one frame at a time.
        self._fast_receive = True
        self.outbox: list[bytes] = []
        self.buffered = 0
        self.inflight = 0  # taken by a write that is still waiting for the peer
        self.limit = backpressure_limit
        self.wants_drain = False
        self.eof = False
        self.close_started = False
        self.pong_seen = False
        self._fragments: list[Any] | None = None  # str parts for text, bytes for binary
        self._text = False
        self._utf8: codecs.IncrementalDecoder | None = None
        self._max_size = max_message_size
        self._buffer = bytearray()  # bytes of a frame not complete yet (fast path)
        self._owed = 0  # bytes the Protocol still needs to complete a frame it started
        self._protocol_fragment = False  # the Protocol is inside a fragmented message
        # A fragmented message streamed here: its bytes so far, its kind, and
        # the payload bytes still to come of its current frame, with the
        # frame's mask and how far into the frame the next byte is.
        self._message: list[bytes] | None = None
        self._message_size = 0
        self._message_text = False
        self._frame_left = 0
        self._frame_mask = b""
        self._frame_offset = 0
        self._frame_fin = False
        # A frame that may end the socket, or a failure, that came after
        # messages completed by the same bytes: it waits until the caller has
        # handled them (``waiting``), so that their answers go out first.
        self._held = b""
        self._doomed: tuple[int, str] | None = None
        self.waiting = False

    # -- input ---------------------------------------------------------------

    def receive(self, data: bytes) -> list[str | bytes]:
        """Feed bytes from the peer; return the messages they completed.

        ``data`` may be a view of a buffer the caller reuses for its next read:
        whatever is kept from it here (an incomplete frame, a payload) is copied.

        A close frame, or a frame or byte that fails the socket, after messages
        completed by the same ``data`` is not acted on yet: ``waiting`` turns
        true, and the caller, once it has handled those messages (their
        handlers' sends queued), calls ``receive`` again (with ``b""`` if
        nothing more arrived). The answers to messages a client sent before its
        close (or before a broken frame) thus leave before the close frame
        (RFC 6455 5.5.1 lets an endpoint finish sending first; Autobahn 7.1.1).
        """
        TALLY.bytes_in += len(data)
        if not self._fast_receive or self.close_started or self.protocol.state is not OPEN:
            if self.waiting:
                return self._resume(data)
            messages: list[str | bytes] = []
            self._receive_slow(self._hand_over(data), messages, defer=False)
            return messages
        messages = []
        if self._owed:
            head, data = data[: self._owed], data[self._owed :]
            self._owed -= len(head)
            self._receive_slow(head, messages)
            if not data or self.protocol.state is not OPEN:
                return messages
        if self._frame_left:
            taken = min(len(data), self._frame_left)
            if not self._stream(memoryview(data)[:taken], messages):
                return messages
            data = data[taken:]
            if not data:
                return messages
        if self._buffer:
            self._buffer += data
            view: bytes | bytearray = self._buffer
        else:
            view = data
        end = len(view)
        pos = 0
        while end - pos >= 2:
            first, second = view[pos], view[pos + 1]
            length = second & 0x7F
            header = 2
            if length == 126:
                header = 4
                if end - pos < 4:
                    break
                length = int.from_bytes(view[pos + 2 : pos + 4], "big")
            elif length == 127:
                header = 10
                if end - pos < 10:
                    break
                length = int.from_bytes(view[pos + 2 : pos + 10], "big")
            if second & 0x80:
                header += 4
            if end - pos < header:
                break
            total = header + length
            if (
                (first == 0x81 or first == 0x82)
                and second & 0x80
                and length <= self._max_size
                and not self._protocol_fragment
                and self._message is None
                and (end - pos >= total or length <= STREAM_ABOVE)
            ):
                if end - pos < total:
                    break  # wait for the rest of this frame
                start = pos + header
                payload = apply_mask(memoryview(view)[start : pos + total], view[start - 4 : start])
                pos += total
                if first == 0x81:
                    try:
                        messages.append(str(payload, "utf-8"))
                    except UnicodeDecodeError as exc:
                        reason = f"invalid UTF-8 at position {exc.start}"
                        self._fail(CloseCode.INVALID_DATA, reason, bool(messages))
                        self._buffer = bytearray()
                        return messages
                else:
                    messages.append(payload)
                continue
            if second & 0x80 and first & 0x7F < 3 and not self._protocol_fragment:
                # An uncompressed data frame that is a fragment (or too big):
                # checked from its header, then streamed into the message.
                mask = bytes(view[pos + header - 4 : pos + header])
                if not self._start_frame(first, length, mask, bool(messages)):
                    self._buffer = bytearray()
                    return messages
                pos += header
                taken = min(end - pos, self._frame_left)
                if not self._stream(memoryview(view)[pos : pos + taken], messages):
                    self._buffer = bytearray()
                    return messages
                pos += taken
                continue
            if self._message is not None and (first & 0x0F) in (0x1, 0x2):
                # A compressed message inside ours: the Protocol cannot tell.
                self._fail(
                    CloseCode.PROTOCOL_ERROR, "expected a continuation frame", bool(messages)
                )
                self._buffer = bytearray()
                return messages
            if messages and not self._routine(first, second, length):
                # A close, or a frame the Protocol may fail: after the answers.
                self._held = bytes(view[pos:end])
                self._wait()
                self._buffer = bytearray()
                return messages
            # Anything else goes to the Protocol, whole or as far as it arrived.
            chunk = bytes(view[pos : pos + total])
            pos += len(chunk)
            self._owed = total - len(chunk)
            opcode, fin = first & 0x0F, first & 0x80
            if opcode in (0x1, 0x2) and not fin:
                self._protocol_fragment = True
            elif opcode == 0x0 and fin:
                self._protocol_fragment = False
            elif opcode == 0x8 and self._protocol_fragment:
                self._drop_protocol_fragment()
            self._receive_slow(chunk, messages)
            if self._owed or self.waiting or self.protocol.state is not OPEN:
                break
        if end - pos >= 2 and not self.waiting and self.protocol.state is OPEN:
            pos = self._fail_early(view, pos, end, messages)
        if pos == end or self.waiting or self.protocol.state is not OPEN:
            self._buffer = bytearray()
        elif view is self._buffer:
            del self._buffer[:pos]
        else:
            self._buffer = bytearray(view[pos:])
        return messages

    def _fail_early(
        self, view: bytes | bytearray, pos: int, end: int, messages: list[str | bytes]
    ) -> int:
        """A frame whose header has not fully arrived, but whose first bytes
        already fail it (a reserved opcode, no mask, a length over the limit),
        goes to the Protocol now, as the Protocol alone would fail it at once:
        a peer that stops there is not left open. Returns where the input left
        off (``end`` if handed over or held)."""
        first, second = view[pos], view[pos + 1]
        length = second & 0x7F
        if length == 126:
            length = int.from_bytes(view[pos + 2 : pos + 4], "big") if end - pos >= 4 else 0
        elif length == 127:
            length = int.from_bytes(view[pos + 2 : pos + 10], "big") if end - pos >= 10 else 0
        room = self._max_size - (self._message_size if self._message is not None else 0)
        if second & 0x80 and first & 0x0F not in _RESERVED_OPCODES and length <= room:
            return pos  # nothing wrong yet: wait for the rest of the header
        if messages:
            self._held = bytes(view[pos:end])  # after the answers (see ``receive``)
            self._wait()
        else:
            self._receive_slow(bytes(view[pos:end]), messages)
        return end

    def _drop_protocol_fragment(self) -> None:
        """A close came between the fragments of a message the Protocol reads
        (a compressed one). RFC 6455 section 5.4 lets control frames, close
        included, come between fragments, but the Protocol fails that with 1002
        ("incomplete fragmented message"): the message is dropped here first,
        so the close is answered as on the fast path, as a clean close."""
        self._protocol_fragment = False
        self._fragments = None
        self._utf8 = None
        self.protocol.current_size = None

    def _routine(self, first: int, second: int, length: int) -> bool:
        """A ping, a pong or a frame of a compressed message, well formed as far
        as its header tells: frames that come often and end nothing, so they
        are not held back behind the messages before them (see ``receive``)."""
        opcode = first & 0x0F
        if not second & 0x80 or first & 0x30:  # unmasked, or RSV2 / RSV3
            return False
        if opcode == 0x9 or opcode == 0xA:
            return first & 0xC0 == 0x80 and length <= 125  # final, not compressed
        if not self.protocol.extensions:
            return False
        return opcode == 0x1 or opcode == 0x2 or (opcode == 0x0 and not first & 0x40)

    def _wait(self) -> None:
        """Something waits for the messages before it (``receive``): the next
        call takes the slow branch, which resumes it."""
        self.waiting = True
        self._fast_receive = False

    def _resume(self, data: bytes) -> list[str | bytes]:
        """What waited, now that the messages before it were handled, then ``data``."""
        self.waiting = False
        doomed, self._doomed = self._doomed, None
        if doomed is not None:
            self.protocol.fail(*doomed)
            self._collect()
            return []
        held, self._held = self._held, b""
        self._fast_receive = True
        TALLY.bytes_in -= len(held)  # counted when it first arrived
        return self.receive(held + bytes(data))

    def _start_frame(self, first: int, length: int, mask: bytes, defer: bool) -> bool:
        """Check an uncompressed data frame's header against the message so far;
        False once the socket failed (1002 out of sequence, 1009 too big;
        ``defer``: after messages of the same bytes, see ``_fail``)."""
        message = self._message
        # Size before sequence, in the Protocol's order, so that a frame
        # breaking both gets the same code (1009) on either path. Refused
        # from the header: nothing past the limit is ever kept.
        if length > self._max_size - (0 if message is None else self._message_size):
            return self._fail(
                CloseCode.MESSAGE_TOO_BIG, f"message over {self._max_size} bytes", defer
            )
        if first & 0x0F:  # text or binary: a new message
            if message is not None:
                return self._fail(CloseCode.PROTOCOL_ERROR, "expected a continuation frame", defer)
            self._message = []
            self._message_size = 0
            self._message_text = first & 0x0F == 0x1
            self._utf8 = _utf8_decoder() if self._message_text else None
        elif message is None:
            return self._fail(CloseCode.PROTOCOL_ERROR, "unexpected continuation frame", defer)
        self._frame_left = length
        self._frame_mask = mask
        self._frame_offset = 0
        self._frame_fin = bool(first & 0x80)
        return True

    def _stream(self, chunk: memoryview, messages: list[str | bytes]) -> bool:
        """Unmask the next bytes of the current fragment into the message;
        appends the message when its final frame ends. False once failed (1007)."""
        message = self._message
        assert message is not None  # only called inside a streamed message
        if chunk:
            shift = self._frame_offset % 4
            mask = self._frame_mask[shift:] + self._frame_mask[:shift]
            payload = apply_mask(chunk, mask)
            self._frame_offset += len(payload)
            self._frame_left -= len(payload)
            if self._utf8 is not None:
                try:
                    self._utf8.decode(payload)  # validated as it arrives: 1007 at once
                except UnicodeDecodeError as exc:
                    return self._fail(
                        CloseCode.INVALID_DATA,
                        f"invalid UTF-8 in a fragmented message ({exc.reason})",
                        bool(messages),
                    )
            message.append(payload)
            self._message_size += len(payload)
        if self._frame_left or not self._frame_fin:
            return True
        self._message = None
        if self._utf8 is None:
            messages.append(b"".join(message))
            return True
        try:
            self._utf8.decode(b"", True)
        except UnicodeDecodeError as exc:
            return self._fail(
                CloseCode.INVALID_DATA,
                f"invalid UTF-8 in a fragmented message ({exc.reason})",
                bool(messages),
            )
        self._utf8 = None
        messages.append(b"".join(message).decode())
        return True

    def _fail(self, code: int, reason: str, defer: bool) -> bool:
        """Fail the socket; always False (for ``return``). ``defer``: messages
        completed by the same bytes are answered first (see ``receive``)."""
        self._message = None
        self._fragments = None
        self._utf8 = None
        self._frame_left = 0
        if defer:
            self._doomed = (code, reason)
            self._wait()
        else:
            self.protocol.fail(code, reason)
            self._collect()
        return False

    def _hand_over(self, data: bytes) -> bytes:
        """What the Protocol gets once the fast path stops (closing): the rest of
        a streamed fragment is dropped (its message can no longer be
        delivered), a partly received frame goes to the Protocol from its start."""
        if self._frame_left:
            skipped = min(len(data), self._frame_left)
            self._frame_left -= skipped
            data = data[skipped:]
            if self._frame_left:
                return b""
            self._message = None
        if self._buffer:
            data = bytes(self._buffer) + data
            self._buffer = bytearray()
        return data

    def pending_bytes(self) -> int:
        """Bytes still missing from a large frame being received (a read-size hint)."""
        buffer = self._buffer
        if len(buffer) < 10:
            return 0
        length = buffer[1] & 0x7F
        if length == 127:
            needed = 14 + int.from_bytes(buffer[2:10], "big")
        elif length == 126:
            needed = 8 + int.from_bytes(buffer[2:4], "big")
        else:
            return 0
        return max(0, min(needed, self._max_size + 14) - len(buffer))

    def _receive_slow(
        self, data: bytes, messages: list[str | bytes], *, defer: bool = True
    ) -> None:
        """Through the websockets Protocol: every check, every frame kind; the
        messages completed are added to ``messages``. ``defer``: a failure
        found here waits for the messages before it (one frame at a time only:
        the Protocol has acted on every frame of ``data`` already)."""
        protocol = self.protocol
        protocol.receive_data(data)
        # A Protocol created OPEN only ever produces frames.
        for frame in cast("list[Frame]", protocol.events_received()):
            opcode = frame.opcode
            if opcode is _TEXT or opcode is _BINARY:
                if frame.fin:
                    if opcode is _TEXT:
                        text = self._decode(frame.data, defer and bool(messages))
                        if text is None:
                            break
                        messages.append(text)
                    else:
                        messages.append(bytes(frame.data))
                else:
                    self._fragments = []
                    self._text = opcode is _TEXT
                    # Text is validated fragment by fragment: invalid UTF-8
                    # fails with 1007 at once, not after the whole message.
                    self._utf8 = _utf8_decoder() if self._text else None
                    if not self._add_fragment(frame.data, False, defer and bool(messages)):
                        break
            elif opcode is _CONT:
                if not self._add_fragment(frame.data, frame.fin, defer and bool(messages)):
                    break
                if frame.fin:
                    assert self._fragments is not None  # the Protocol checks the sequence
                    parts, self._fragments = self._fragments, None
                    messages.append("".join(parts) if self._text else b"".join(parts))
            elif opcode is _PONG:
                self.pong_seen = True
        self._collect()

    def receive_eof(self) -> None:
        """The peer closed its side of the TCP connection."""
        self.protocol.receive_eof()
        self._collect()

    def _add_fragment(self, data: bytes | bytearray | memoryview, final: bool, defer: bool) -> bool:
        """Keep one fragment (decoded if text); False once the socket failed (1007)."""
        assert self._fragments is not None  # the Protocol checks the sequence
        if self._utf8 is None:
            self._fragments.append(bytes(data))
            return True
        try:
            self._fragments.append(self._utf8.decode(data, final))
        except UnicodeDecodeError as exc:
            reason = f"invalid UTF-8 in a fragmented message ({exc.reason})"
            return self._fail(CloseCode.INVALID_DATA, reason, defer)
        return True

    def _decode(self, payload: bytes | bytearray | memoryview, defer: bool) -> str | None:
        try:
            return str(payload, "utf-8")
        except UnicodeDecodeError as exc:
            self._fail(CloseCode.INVALID_DATA, f"invalid UTF-8 at position {exc.start}", defer)
            return None

    # -- output --------------------------------------------------------------

    def send(self, data: str | bytes) -> SendStatus:
        """Queue one message, unless the socket is closing or the outbox is full."""
        if self.close_started or self.protocol.state is not OPEN:
            return SendStatus.CLOSED
        if self.buffered + self.inflight >= self.limit:
            self.wants_drain = True
            return SendStatus.DROPPED
        TALLY.messages_out += 1
        if self._fast_send:
            if isinstance(data, str):
                payload = data.encode()
                head = _frame_head(0x1, len(payload))
            else:
                payload = data
                head = _frame_head(0x2, len(payload))
            self.outbox += (head, payload)
            # The header is 2, 4 or 10 bytes (RFC 6455 5.2): count what is written.
            self.buffered += len(head) + len(payload)
        elif isinstance(data, str):
            self.protocol.send_text(data.encode())
            self._collect()
        else:
            self.protocol.send_binary(data)
            self._collect()
        if self.buffered + self.inflight >= self.limit:
            self.wants_drain = True
            return SendStatus.BACKPRESSURE
        return SendStatus.QUEUED

    def send_text(self, payload: bytes) -> SendStatus:
        """Queue one text message already encoded as UTF-8 by the caller
        (``ws.send`` of an object, which its encoder made JSON bytes of): the
        bytes go out as they are, with no ``str`` made to be encoded again.
        The caller vouches that they are valid UTF-8. ``send`` stays the
        shorter path for ``str`` and bytes (one method each, no flag to test)."""
        if self.close_started or self.protocol.state is not OPEN:
            return SendStatus.CLOSED
        if self.buffered + self.inflight >= self.limit:
            self.wants_drain = True
            return SendStatus.DROPPED
        TALLY.messages_out += 1
        if self._fast_send:
            head = _frame_head(0x1, len(payload))
            self.outbox += (head, payload)
            self.buffered += len(head) + len(payload)
        else:
            self.protocol.send_text(payload)
            self._collect()
        if self.buffered + self.inflight >= self.limit:
            self.wants_drain = True
            return SendStatus.BACKPRESSURE
        return SendStatus.QUEUED

    def ping(self, payload: bytes = b"") -> None:
        if self.protocol.state is OPEN and not self.close_started:
            self.protocol.send_ping(payload)
            self._collect()

    def close(self, code: int, reason: str) -> bool:
        """Queue a close frame; False if the closing handshake had already begun."""
        if self.close_started or self.protocol.state is not OPEN:
            return False
        self.close_started = True
        self.protocol.send_close(code, reason)
        self._collect()
        return True

    def take_output(self) -> list[bytes]:
        """Everything queued, ready for one (gathering) write, and reset the count.

        Small frames are joined into one buffer; a large payload is left as
        its own buffer so that it is never copied on its way to the kernel.
        """
        outbox = self.outbox
        if len(outbox) <= 1 or self.buffered <= JOIN_LIMIT:
            chunks = [b"".join(outbox)] if len(outbox) > 1 else list(outbox)
        else:
            chunks = _gathered(outbox)
        outbox.clear()
        TALLY.bytes_out += self.buffered
        self.buffered = 0
        return chunks

    def put_back(self, chunks: list[bytes]) -> None:
        """Return what a partial write left over to the front of the outbox."""
        self.outbox[0:0] = chunks
        size = sum(len(chunk) for chunk in chunks)
        self.buffered += size
        TALLY.bytes_out -= size  # not written after all: counted when it is

    def _collect(self) -> None:
        for chunk in self.protocol.data_to_send():
            if chunk:
                self.outbox.append(chunk)
                self.buffered += len(chunk)
            else:
                self.eof = True

    # -- state ---------------------------------------------------------------

    @property
    def is_open(self) -> bool:
        return self.protocol.state is OPEN and not self.close_started

    @property
    def closed(self) -> bool:
        return self.protocol.state is CLOSED

    def close_status(self) -> tuple[int, str]:
        """(code, reason) for the ``close`` handler.

        The peer's close frame when there was one (1005 if it carried no
        code), else the frame we sent, else 1006 (connection lost).
        """
        received: Close | None = self.protocol.close_rcvd
        if received is not None:
            return received.code, received.reason
        sent: Close | None = self.protocol.close_sent
        if sent is not None:
            return sent.code, sent.reason
        return CloseCode.ABNORMAL_CLOSURE, ""


def _gathered(outbox: list[bytes]) -> list[bytes]:
    """Buffers of at least GATHER_AS_IS as they are (never copied), the runs of
    smaller ones between them joined, up to JOIN_LIMIT bytes a run: at most two
    buffers per GATHER_AS_IS bytes. One per frame made writing many small frames
    quadratic: a write takes IOV_MAX buffers, and the rest of the list is
    recomputed after each (measured: 900,000 buffers held the loop for 25 s)."""
    chunks: list[bytes] = []
    run: list[bytes] = []
    size = 0
    for chunk in outbox:
        length = len(chunk)
        if length >= GATHER_AS_IS:
            if run:
                chunks.append(b"".join(run))
                run, size = [], 0
            chunks.append(chunk)
            continue
        run.append(chunk)
        size += length
        if size >= JOIN_LIMIT:
            chunks.append(b"".join(run))
            run, size = [], 0
    if run:
        chunks.append(b"".join(run))
    return chunks
