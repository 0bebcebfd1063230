"""Tests for the fan-out wire formats in chatroom.core.fanout."""

from __future__ import annotations

import ipaddress
import re
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import given, settings
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase

from chatroom.core import fanout as f
from chatroom.core.discovery import raw_public_key
from chatroom.core.errors import ParseError
from chatroom.core.ircline import format_text, parse_line

DOC = Path(__file__).resolve().parent.parent / "docs" / "protocol-fanout.rst"

TEST_KEY = Ed25519PrivateKey.from_private_bytes(b"\x01" * 32)
OTHER_KEY = Ed25519PrivateKey.from_private_bytes(b"\x02" * 32)
ROOM = f.RoomIdentity(raw_public_key(TEST_KEY), "lobby")
EPOCH_KEY = f.EpochKey(1, bytes(range(32)))
OTHER_EPOCH_KEY = f.EpochKey(1, bytes(range(32, 64)))

LINE_41 = (
    b"@time=2026-11-24T16:29:58.126Z;msgid=lobby:41 :alice!~alice@127.0.0.1 JOIN #lobby"
)
LINE_42 = (
    b"@time=2026-11-24T16:29:58.728Z;msgid=lobby:42"
    b" :alice!~alice@127.0.0.1 PRIVMSG #lobby :hello, rooftops"
)


def make_vectors() -> dict[str, bytes]:
    """Build the test vectors that docs/protocol-fanout.rst lists."""
    return {
        "room-id": ROOM.room_id,
        "nonce": f.nonce(1, 0),
        "data": f.seal(
            TEST_KEY,
            ROOM,
            EPOCH_KEY,
            f.KIND_DATA,
            0,
            41,
            f.encode_events([LINE_41, LINE_42]),
        ),
        "data-over-tls": f.seal(
            TEST_KEY, ROOM, EPOCH_KEY, f.KIND_DATA, 1, 43, f.encode_events([None])
        ),
        "heartbeat": f.seal(TEST_KEY, ROOM, EPOCH_KEY, f.KIND_HEARTBEAT, 2, 43, b""),
    }


def vectors_in_doc() -> dict[str, bytes]:
    """Read the hex test vectors from the protocol document."""
    text = DOC.read_text(encoding="utf-8")
    found = {}
    for match in re.finditer(
        r"Test vector ``([\w-]+)``::\n\n((?:    [0-9a-f]+\n)+)", text
    ):
        found[match.group(1)] = bytes.fromhex("".join(match.group(2).split()))
    return found


def lines_in_doc() -> list[str]:
    """The example FANOUT lines in the document (``Line::`` blocks)."""
    text = DOC.read_text(encoding="utf-8")
    lines = []
    for match in re.finditer(r"Example lines::\n\n((?:    .+\n)+)", text):
        lines += [line.strip() for line in match.group(1).splitlines()]
    return lines


class VectorTests(SynchronousTestCase):
    """The document's hex vectors are what the code produces, byte for byte."""

    def test_vectors_match_document(self) -> None:
        """Every vector regenerated from the fixed keys equals the hex in
        docs/protocol-fanout.rst, and the document lists them all."""
        self.assertEqual(vectors_in_doc(), make_vectors())

    def test_vectors_open(self) -> None:
        """The document's datagrams open under the epoch key and verify."""
        docs = vectors_in_doc()
        data = f.open_datagram(f.Datagram.from_bytes(docs["data"]), ROOM, EPOCH_KEY)
        self.assertEqual((data.seq, data.lines), (41, (LINE_41, LINE_42)))
        self.assertEqual(data.last_seq, 42)
        tls = f.open_datagram(
            f.Datagram.from_bytes(docs["data-over-tls"]), ROOM, EPOCH_KEY
        )
        self.assertEqual((tls.seq, tls.lines), (43, (None,)))
        beat = f.open_datagram(
            f.Datagram.from_bytes(docs["heartbeat"]), ROOM, EPOCH_KEY
        )
        self.assertEqual(
            (beat.kind, beat.seq, beat.lines, beat.counter),
            (f.KIND_HEARTBEAT, 43, (), 2),
        )
        for name in ("data", "data-over-tls", "heartbeat"):
            self.assertEqual(f.Datagram.from_bytes(docs[name]).to_bytes(), docs[name])

    def test_example_lines(self) -> None:
        """Every example FANOUT line in the document parses into the value
        object of its verb and formats back to the same text."""
        lines = lines_in_doc()
        self.assertGreaterEqual(len(lines), 7)
        for text in lines:
            message = parse_line(text.encode())
            self.assertEqual(message.command, f.COMMAND, text)
            params = message.params
            verb = params[1]
            parsed: object
            if verb == "KEY":
                parsed = f.KeyGrant.from_params(params)
            elif verb == "MODE":
                parsed = f.ModeChange.from_params(params)
            elif verb == "REPAIRED":
                parsed = f.Repaired.from_params(params)
            else:
                parsed = f.MemberRequest.from_params(params)
            self.assertEqual(
                format_text(
                    f.COMMAND,
                    *parsed.to_params(),  # type: ignore[attr-defined]
                    prefix=message.prefix,
                ).rstrip("\r\n"),
                text,
            )

    def test_key_line_vector(self) -> None:
        """The KEY line of the document carries the test epoch key."""
        grant = f.KeyGrant(
            room="lobby", epoch_key=EPOCH_KEY, group="239.255.67.70", port=47668
        )
        self.assertIn(
            format_text(
                f.COMMAND, *grant.to_params(), prefix="6a2aac0f8bfb051d.chatroom"
            ).rstrip(),
            lines_in_doc(),
        )


events = st.lists(
    st.one_of(
        st.none(),
        st.binary(min_size=1, max_size=300).filter(
            lambda b: not ({13, 10, 0} & set(b))
        ),
    ),
    min_size=1,
    max_size=6,
)


class CapabilityNameTests(SynchronousTestCase):
    def test_one_name(self):
        """The core's capability name and the one the host's options and
        command table use without loading fan-out are the same string."""
        from chatroom.wellknown import FANOUT_CAPABILITY

        self.assertEqual(f.CAPABILITY, FANOUT_CAPABILITY)


class RoundTripTests(SynchronousTestCase):
    """Sealing then opening gives back what was sealed."""

    @settings(max_examples=100, deadline=None)
    @given(
        events,
        st.integers(1, f.MAX_EPOCH),
        st.integers(0, f.MAX_COUNTER),
        st.integers(1, 2**40),
    )
    def test_data_round_trip(
        self, lines: list[bytes | None], epoch: int, counter: int, seq: int
    ) -> None:
        """Any events that fit come back in order with their numbers."""
        key = f.EpochKey(epoch, bytes(32))
        plaintext = f.encode_events(lines)
        if len(plaintext) > f.MAX_PLAINTEXT:
            self.assertRaises(
                ParseError,
                f.seal,
                TEST_KEY,
                ROOM,
                key,
                f.KIND_DATA,
                counter,
                seq,
                plaintext,
            )
            return
        data = f.seal(TEST_KEY, ROOM, key, f.KIND_DATA, counter, seq, plaintext)
        self.assertLessEqual(len(data), f.MAX_DATAGRAM_SIZE)
        datagram = f.Datagram.from_bytes(data)
        self.assertEqual(datagram.to_bytes(), data)
        opened = f.open_datagram(datagram, ROOM, key)
        self.assertEqual(opened.lines, tuple(lines))
        self.assertEqual(
            (opened.seq, opened.epoch, opened.counter), (seq, epoch, counter)
        )

    @settings(max_examples=100, deadline=None)
    @given(
        st.lists(
            st.tuples(st.integers(1, 10**6), st.integers(0, 5)), min_size=1, max_size=20
        )
    )
    def test_ranges_round_trip(self, spans: list[tuple[int, int]]) -> None:
        """Ascending disjoint ranges format and parse back unchanged."""
        ranges = []
        at = 0
        for gap, width in spans:
            first = at + gap
            ranges.append((first, first + width))
            at = first + width + 1
        total = sum(b - a + 1 for a, b in ranges)
        text = f.format_ranges(ranges)
        if total > 1000 or len(text) > 450:
            self.assertRaises(ParseError, f.parse_ranges, text)
        else:
            self.assertEqual(f.parse_ranges(text), tuple(ranges))

    @settings(max_examples=100, deadline=None)
    @given(
        st.integers(1, f.MAX_EPOCH),
        st.binary(min_size=32, max_size=32),
        st.integers(0xE0000000, 0xEFFFFFFF).map(
            lambda n: str(ipaddress.IPv4Address(n))
        ),
        st.integers(1, 65535),
        st.integers(0, f.MAX_COUNTER),
    )
    def test_key_grant_round_trip(
        self, epoch: int, key: bytes, group: str, port: int, counter: int
    ) -> None:
        """A KEY line's parameters parse back to the same grant."""
        grant = f.KeyGrant("lobby", f.EpochKey(epoch, key), group, port, counter)
        self.assertEqual(f.KeyGrant.from_params(grant.to_params()), grant)

    def test_requests_round_trip(self) -> None:
        """Each member request and host reply round-trips."""
        for request in (
            f.MemberRequest("lobby", "START", epoch=3),
            f.MemberRequest("lobby", "STOP"),
            f.MemberRequest("lobby", "SYNC"),
            f.MemberRequest("lobby", "REPAIR", ranges=((5, 7), (12, 12))),
        ):
            self.assertEqual(f.MemberRequest.from_params(request.to_params()), request)
        mode = f.ModeChange("lobby", True, 41)
        self.assertEqual(f.ModeChange.from_params(mode.to_params()), mode)
        repaired = f.Repaired("lobby", ((5, 7),))
        self.assertEqual(f.Repaired.from_params(repaired.to_params()), repaired)


class BadInputTests(SynchronousTestCase):
    """Malformed input raises ParseError with a reason, and nothing else."""

    def reason(self, function: object, *args: object) -> str:
        """The reason token of the ParseError ``function(*args)`` raises."""
        with self.assertRaises(ParseError) as caught:
            function(*args)  # type: ignore[operator]
        return caught.exception.reason

    @settings(max_examples=300, deadline=None)
    @given(st.binary(max_size=1300))
    def test_random_bytes(self, data: bytes) -> None:
        """Arbitrary bytes are refused by the header checks or the AEAD."""
        try:
            datagram = f.Datagram.from_bytes(data)
        except ParseError:
            return
        self.assertRaises(ParseError, f.open_datagram, datagram, ROOM, EPOCH_KEY)

    def test_header_checks(self) -> None:
        """Each cheap check has its own reason."""
        data = make_vectors()["data"]
        self.assertEqual(self.reason(f.Datagram.from_bytes, data[:100]), "truncated")
        self.assertEqual(
            self.reason(f.Datagram.from_bytes, data + bytes(1200)), "oversized"
        )
        self.assertEqual(
            self.reason(f.Datagram.from_bytes, b"XXXX" + data[4:]), "bad-magic"
        )
        self.assertEqual(
            self.reason(f.Datagram.from_bytes, data[:4] + b"\x02" + data[5:]),
            "unsupported-version",
        )
        self.assertEqual(
            self.reason(f.Datagram.from_bytes, data[:5] + b"\x09" + data[6:]),
            "unknown-kind",
        )
        zero_epoch = data[:14] + bytes(4) + data[18:]
        self.assertEqual(self.reason(f.Datagram.from_bytes, zero_epoch), "malformed")

    def test_every_truncation_refused(self) -> None:
        """Every proper prefix of every datagram vector is refused."""
        for name in ("data", "data-over-tls", "heartbeat"):
            data = make_vectors()[name]
            for end in range(len(data)):
                try:
                    datagram = f.Datagram.from_bytes(data[:end])
                except ParseError:
                    continue
                self.assertRaises(
                    ParseError, f.open_datagram, datagram, ROOM, EPOCH_KEY
                )

    def test_every_bit_flip_refused(self) -> None:
        """Flipping any bit of the data vector makes it fail a check."""
        data = make_vectors()["data"]
        for i in range(len(data)):
            for bit in (0x01, 0x80):
                bad = bytearray(data)
                bad[i] ^= bit
                with self.assertRaises(ParseError, msg=str(i)):
                    f.open_datagram(f.Datagram.from_bytes(bytes(bad)), ROOM, EPOCH_KEY)

    def test_member_forgery(self) -> None:
        """A member holding the epoch key seals a datagram with its own
        Ed25519 key (or none): it decrypts, and the signature check
        refuses it."""
        forged = f.seal(
            OTHER_KEY,
            ROOM,
            EPOCH_KEY,
            f.KIND_DATA,
            5,
            44,
            f.encode_events([b"PRIVMSG #lobby :forged"]),
        )
        datagram = f.Datagram.from_bytes(forged)
        datagram.open(ROOM, EPOCH_KEY)
        self.assertEqual(
            self.reason(f.open_datagram, datagram, ROOM, EPOCH_KEY), "bad-signature"
        )

    def test_non_member_forgery(self) -> None:
        """Without the epoch key, even a correctly signed datagram (the
        host's own key under the wrong epoch key) fails the AEAD first."""
        forged = f.seal(
            TEST_KEY, ROOM, OTHER_EPOCH_KEY, f.KIND_DATA, 5, 44, f.encode_events([b"x"])
        )
        self.assertEqual(
            self.reason(
                f.open_datagram, f.Datagram.from_bytes(forged), ROOM, EPOCH_KEY
            ),
            "bad-ciphertext",
        )

    def test_other_room_same_key(self) -> None:
        """The room identity is authenticated: a datagram of #lobby does not
        open as #other even with the same epoch key."""
        data = make_vectors()["data"]
        other = f.RoomIdentity(ROOM.q, "other")
        self.assertEqual(
            self.reason(f.open_datagram, f.Datagram.from_bytes(data), other, EPOCH_KEY),
            "bad-ciphertext",
        )

    def test_bad_plaintext(self) -> None:
        """Signed and sealed but malformed event lists are refused."""
        for plaintext in (
            b"\x00\x05abc",
            b"\x00\x01",
            b"\x00\x02a\n",
            b"\x00\x01a\x00",
        ):
            data = f.seal(TEST_KEY, ROOM, EPOCH_KEY, f.KIND_DATA, 0, 1, plaintext)
            self.assertEqual(
                self.reason(
                    f.open_datagram, f.Datagram.from_bytes(data), ROOM, EPOCH_KEY
                ),
                "malformed",
            )
        zero_seq = f.seal(
            TEST_KEY, ROOM, EPOCH_KEY, f.KIND_DATA, 0, 0, f.encode_events([b"x"])
        )
        self.assertEqual(
            self.reason(
                f.open_datagram, f.Datagram.from_bytes(zero_seq), ROOM, EPOCH_KEY
            ),
            "malformed",
        )

    def test_bad_lines(self) -> None:
        """FANOUT lines with wrong parameters are refused with reasons."""
        good = f.KeyGrant("lobby", EPOCH_KEY, "239.255.67.70", 47668).to_params()
        for i, bad in ((3, "aes-128-ocb"),):
            params = list(good)
            params[i] = bad
            self.assertEqual(
                self.reason(f.KeyGrant.from_params, params), "unsupported-algorithm"
            )
        for i, bad in (
            (0, "lobby"),
            (2, "0"),
            (2, "01"),
            (4, "AB" * 32),
            (5, "10.0.0.1"),
            (5, "x"),
            (6, "0"),
            (7, "-1"),
        ):
            params = list(good)
            params[i] = bad
            self.assertEqual(
                self.reason(f.KeyGrant.from_params, params), "bad-params", (i, bad)
            )
        for text in ("", "0", "5-3", "3,3", "1-1001", "a", "1-2-3", "2,1"):
            self.assertRaises(ParseError, f.parse_ranges, text)
        self.assertEqual(self.reason(f.parse_ranges, "1-1001"), "too-many")
        self.assertEqual(
            self.reason(f.MemberRequest.from_params, ["#lobby", "DANCE"]),
            "unknown-verb",
        )
        self.assertEqual(
            self.reason(f.MemberRequest.from_params, ["#lobby", "START"]), "bad-params"
        )
        self.assertEqual(
            self.reason(f.ModeChange.from_params, ["#lobby", "MODE", "UDP", "1"]),
            "bad-params",
        )
