"""SLIP framing and the ISP packet codec against the byte-level vectors of the spec (§2.6)."""

from __future__ import annotations

import pytest

from deploy.isp import slip
from deploy.isp.packet import Op, Reason, baud_request, crc32, parse_reply, parse_request, request, short_request


def h(text: str) -> bytes:
    return bytes.fromhex(text.replace(" ", ""))


def test_crc32_check_value() -> None:
    assert crc32(b"123456789") == 0xCBF43926


@pytest.mark.parametrize(("payload", "vector"), [
    (request(Op.ROM_NOP), "c2000000 69df2265 00000000 00000000"),
    (request(Op.FLASH_NOP), "d2000000 69df2265 00000000 00000000"),
    (request(Op.FLASH_INIT, 1), "d7000000 f7df88a9 01000000 00000000"),
    (baud_request(Op.UARTHS_BAUDRATE_SET, 1_500_000), "d6000000 b8e48573 00000000 04000000 60e31600"),
    (request(Op.ROM_MEMORY_BOOT, 0x80000000), "c5000000 fb6fc4d4 00000080 00000000"),
    (request(Op.ROM_MEMORY_WRITE, 0x80000000, h("deadbeef")), "c3000000 9cb412c4 00000080 04000000 deadbeef"),
    (baud_request(Op.ROM_CHANGE_BAUDRATE, 1_523_684), "c6000000 c138368c 00000000 04000000 e43f1700"),
])
def test_request_vectors(payload: bytes, vector: str) -> None:
    assert payload == h(vector)
    parsed = parse_request(payload)
    assert parsed.crc_ok and parsed.data_len == len(parsed.data)


def test_slip_vectors() -> None:
    assert slip.encode(h("c0db01")) == h("c0 dbdc dbdd 01 c0")
    assert slip.decode(h("c0 dbdc dbdd 01 c0")) == h("c0db01")
    assert slip.encode(bytes([Op.ROM_NOP, Reason.OK])) == h("c0c2e0c0")


def test_short_nop_is_kflash_wire_frame() -> None:
    assert slip.encode(short_request(Op.ROM_NOP)) == h("c0 c2" + "00" * 12 + "c0")
    parsed = parse_request(short_request(Op.ROM_NOP))
    assert parsed.op == Op.ROM_NOP and parsed.size == 13 and not parsed.crc_ok


def test_decoder_skips_noise_splits_frames_and_rejects_bad_escapes() -> None:
    decoder = slip.SlipDecoder()
    stream = b"boot log text\r\n" + slip.encode(b"\xd4\xe0") + slip.encode(b"\xc0\xdb") + b"\xc0\xdb\x01\xc0"
    frames = decoder.feed(stream[:7]) + decoder.feed(stream[7:])
    assert [(f.payload, f.valid) for f in frames[:2]] == [(b"\xd4\xe0", True), (b"\xc0\xdb", True)]
    assert not frames[2].valid and len(frames) == 3


def test_decoder_bounds_frame_size() -> None:
    decoder = slip.SlipDecoder(max_payload=8)
    frames = decoder.feed(b"\xc0" + b"\x01" * 20 + b"\xc0" + slip.encode(b"ok"))
    assert [f.valid for f in frames] == [False, True] and frames[1].payload == b"ok"


def test_crc_detects_single_byte_change() -> None:
    payload = bytearray(request(Op.FLASH_WRITE, 0x1000, bytes(range(64))))
    payload[40] ^= 0x01
    assert not parse_request(bytes(payload)).crc_ok


def test_reply_parse() -> None:
    reply = parse_reply(b"\xd4\xe2")
    assert reply is not None and reply.op == Op.FLASH_WRITE and reply.reason == Reason.BAD_DATA_CHECKSUM
    assert not reply.ok and reply.describe() == "FLASH_WRITE/BAD_DATA_CHECKSUM"
    assert parse_reply(b"\xd4") is None
