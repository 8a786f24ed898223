"""The browser's RFB messages as the desktop relay cuts them: a watcher's input never reaches the node."""

from __future__ import annotations

import struct

import pytest

from stacklab.access.desktop import ClientMessages, ProtocolError

KEY_A = struct.pack(">BBxxI", 4, 1, 0x61)
POINTER = struct.pack(">BBHH", 5, 1, 10, 20)
UPDATE = struct.pack(">BBHHHH", 3, 1, 0, 0, 1280, 800)
ENCODINGS = struct.pack(">BxHii", 2, 2, 0, -223)
CUT = struct.pack(">BxxxI", 6, 5) + b"hello"
QEMU_KEY = struct.pack(">BBHII", 255, 0, 1, 0x61, 30)


def test_learner_input_passes_whole_and_counts_as_activity() -> None:
    touched: list[int] = []
    messages = ClientMessages(read_only=False, on_input=lambda: touched.append(1))
    stream = ENCODINGS + UPDATE + KEY_A + POINTER + CUT + QEMU_KEY
    out = b"".join(messages.feed(stream[i : i + 3]) for i in range(0, len(stream), 3))
    assert out == stream
    assert touched


def test_watcher_input_is_dropped_and_the_rest_passes() -> None:
    touched: list[int] = []
    messages = ClientMessages(read_only=True, on_input=lambda: touched.append(1))
    out = messages.feed(KEY_A + UPDATE + POINTER + CUT + ENCODINGS + QEMU_KEY)
    assert out == UPDATE + ENCODINGS
    assert not touched


def test_unknown_message_and_huge_clipboard_end_the_session() -> None:
    with pytest.raises(ProtocolError, match="unknown RFB message type 99"):
        ClientMessages(False, lambda: None).feed(b"\x63" + bytes(10))
    with pytest.raises(ProtocolError, match="clipboard") as caught:
        ClientMessages(False, lambda: None).feed(struct.pack(">BxxxI", 6, 50 << 20))
    assert caught.value.too_big
