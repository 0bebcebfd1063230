"""Tests for the discovery datagram codecs in chatroom.core.discovery."""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

import attrs
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import given, settings
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase

from chatroom.core import discovery as d
from chatroom.core.discovery import (
    Announcement,
    Answer,
    Goodbye,
    ParseError,
    Query,
    RoomAddress,
    parse_datagram,
)

DOC = Path(__file__).resolve().parent.parent / "docs" / "protocol-discovery.rst"

TEST_KEY = Ed25519PrivateKey.from_private_bytes(b"\x01" * 32)
OTHER_KEY = Ed25519PrivateKey.from_private_bytes(b"\x02" * 32)


def make_vectors() -> dict[str, bytes]:
    """Build the test vectors that docs/protocol-discovery.rst lists."""
    q = d.raw_public_key(TEST_KEY)
    announcement = Announcement.sign(
        TEST_KEY,
        "lobby",
        ["192.0.2.10:6697", "[2001:db8::10]:6697"],
        counter=1,
        lifetime=180,
        multicast_delivery=True,
    )
    unsigned_private = Announcement(
        q=q,
        room="café",
        addresses=["198.51.100.7:6697"],
        counter=7,
        lifetime=60,
        flags=d.FLAG_PRIVATE | 0x80,
        signature=bytes(64),
        extensions=[(200, b"future")],
    )
    private = attrs.evolve(
        unsigned_private, signature=TEST_KEY.sign(unsigned_private.signed_bytes())
    )
    goodbye = Goodbye.sign(TEST_KEY, "lobby", counter=2)
    query = Query(
        query_id=bytes.fromhex("0102030405060708"),
        room="lobby",
        fingerprint_prefix=hashlib.sha256(q).digest()[:8],
    ).padded_to(64)
    answer = Answer(
        query_id=bytes.fromhex("0102030405060708"),
        remaining=170,
        announcement=announcement,
    )
    return {
        "public-key": q,
        "announcement": announcement.to_bytes(),
        "announcement-private-extension": private.to_bytes(),
        "goodbye": goodbye.to_bytes(),
        "query": query.to_bytes(),
        "answer": answer.to_bytes(),
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


room_names = st.text(
    alphabet=st.characters(
        blacklist_categories=("Cs",), blacklist_characters=" ,\x7f"
    ).filter(lambda c: ord(c) >= 0x20),
    min_size=1,
    max_size=16,
)
addresses = st.one_of(
    st.builds(
        RoomAddress,
        st.ip_addresses(v=4).map(str),
        st.integers(1, 65535),
    ),
    st.builds(
        RoomAddress,
        st.ip_addresses(v=6).map(str),
        st.integers(1, 65535),
    ),
)
unknown_types = st.integers(0, 255).filter(lambda t: t not in d.KNOWN_FIELD_TYPES)
extensions = st.lists(st.tuples(unknown_types, st.binary(max_size=20)), max_size=3).map(
    lambda xs: sorted(xs, key=lambda x: x[0])
)
keys = st.sampled_from([TEST_KEY, OTHER_KEY])


@st.composite
def announcements(draw: st.DrawFn) -> Announcement:
    key = draw(keys)
    unsigned = Announcement(
        q=d.raw_public_key(key),
        room=draw(room_names),
        addresses=draw(st.lists(addresses, min_size=1, max_size=d.MAX_ADDRESSES)),
        counter=draw(st.integers(0, d.MAX_COUNTER)),
        lifetime=draw(st.integers(1, d.MAX_LIFETIME)),
        flags=draw(st.integers(0, 255)),
        signature=bytes(64),
        extensions=draw(extensions),
    )
    return attrs.evolve(unsigned, signature=key.sign(unsigned.signed_bytes()))


@st.composite
def goodbyes(draw: st.DrawFn) -> Goodbye:
    key = draw(keys)
    unsigned = Goodbye(
        q=d.raw_public_key(key),
        room=draw(room_names),
        counter=draw(st.integers(0, d.MAX_COUNTER)),
        signature=bytes(64),
        extensions=draw(extensions),
    )
    return attrs.evolve(unsigned, signature=key.sign(unsigned.signed_bytes()))


queries = st.builds(
    Query,
    query_id=st.binary(min_size=8, max_size=8),
    room=st.none() | room_names,
    fingerprint_prefix=st.binary(max_size=32),
    padding=st.none() | st.integers(0, 600),
    extensions=extensions,
)

answers = st.builds(
    Answer,
    query_id=st.binary(min_size=8, max_size=8),
    remaining=st.integers(0, d.MAX_LIFETIME),
    announcement=announcements(),
    extensions=extensions,
)

datagrams = st.one_of(announcements(), goodbyes(), queries, answers)


class TestVectorTests(SynchronousTestCase):
    """The document's hex vectors are what the code produces, byte for byte."""

    def test_vectors_match_document(self) -> None:
        """Every vector regenerated from the fixed test key equals the hex
        printed in docs/protocol-discovery.rst, and the doc lists them all."""
        expected = make_vectors()
        self.assertEqual(vectors_in_doc(), expected)

    def test_vectors_parse(self) -> None:
        """The document's vectors parse and re-encode to the same bytes."""
        for name, data in vectors_in_doc().items():
            if name == "public-key":
                continue
            self.assertEqual(parse_datagram(data).to_bytes(), data, name)

    def test_unknown_fields_kept_and_ignored(self) -> None:
        """An announcement with an unknown field and unknown flag bits parses;
        the known fields read normally and the unknown ones are preserved."""
        parsed = parse_datagram(make_vectors()["announcement-private-extension"])
        assert isinstance(parsed, Announcement)
        self.assertEqual(parsed.room, "café")
        self.assertTrue(parsed.private)
        self.assertFalse(parsed.multicast_delivery)
        self.assertEqual(parsed.extensions, ((200, b"future"),))


class RoundTripTests(SynchronousTestCase):
    """Every value object survives to_bytes/from_bytes unchanged."""

    @settings(max_examples=150, deadline=None)
    @given(datagrams)
    def test_round_trip(self, datagram: d.Datagram) -> None:
        """Encoding then parsing gives back an equal object and the same bytes,
        and every datagram fits the size limit."""
        data = datagram.to_bytes()
        self.assertLessEqual(len(data), d.MAX_DATAGRAM_SIZE)
        parsed = parse_datagram(data)
        self.assertEqual(parsed, datagram)
        self.assertEqual(type(datagram).from_bytes(data), datagram)
        self.assertEqual(parsed.to_bytes(), data)

    def test_largest_announcement_fits_in_answer(self) -> None:
        """An announcement at the size limit still fits in an answer."""
        base = make_vectors()["announcement"]
        a = Announcement.from_bytes(base)
        room = a.room
        unsigned = attrs.evolve(
            a,
            room=room,
            addresses=[RoomAddress("2001:db8::1", p) for p in range(1, 9)],
            extensions=[(200, b"")],
            signature=bytes(64),
        )
        filler = d.MAX_ANNOUNCEMENT_SIZE - len(unsigned.to_bytes())
        unsigned = attrs.evolve(unsigned, extensions=[(200, b"x" * filler)])
        self.assertEqual(len(unsigned.to_bytes()), d.MAX_ANNOUNCEMENT_SIZE)
        signed = attrs.evolve(
            unsigned, signature=TEST_KEY.sign(unsigned.signed_bytes())
        )
        answer = Answer(bytes(8), 10, signed)
        self.assertLessEqual(len(answer.to_bytes()), d.MAX_DATAGRAM_SIZE)
        self.assertEqual(parse_datagram(answer.to_bytes()), answer)
        with self.assertRaises(ParseError):
            attrs.evolve(unsigned, extensions=[(200, b"x" * (filler + 1))])


class KnownStatementTests(SynchronousTestCase):
    """parse_datagram(known=...) reuses a statement verified before, and
    only when the bytes are exactly its own."""

    def test_answer_reuses_known_announcement(self) -> None:
        vectors = make_vectors()
        known = Announcement.from_bytes(vectors["announcement"])
        answer = parse_datagram(vectors["answer"], known=known)
        assert isinstance(answer, Answer)
        self.assertIs(answer.announcement, known)
        self.assertEqual(answer.to_bytes(), vectors["answer"])

    def test_announcement_returns_known(self) -> None:
        data = make_vectors()["announcement"]
        known = Announcement.from_bytes(data)
        self.assertIs(parse_datagram(data, known=known), known)

    def test_other_bytes_not_reused(self) -> None:
        """A known statement does not vouch for different bytes: a forged
        inner announcement is still parsed and verified."""
        vectors = make_vectors()
        known = Announcement.from_bytes(vectors["announcement-private-extension"])
        data = bytearray(vectors["answer"])
        data[-1] ^= 1  # the inner announcement's signature
        with self.assertRaises(ParseError) as caught:
            parse_datagram(bytes(data), known=known)
        self.assertEqual(caught.exception.reason, "bad-signature")
        goodbye = Goodbye.from_bytes(vectors["goodbye"])
        self.assertIsNot(
            parse_datagram(vectors["announcement"], known=goodbye), goodbye
        )


class BadInputTests(SynchronousTestCase):
    """Malformed input raises ParseError and nothing else."""

    def assert_parses_canonically_or_raises(self, data: bytes) -> bool:
        """``data`` either raises ParseError (and nothing else) in every
        parser, or parses to objects that encode back to exactly ``data``
        (with and without the signature check).  Returns whether it parsed."""
        parsed_any = False
        try:
            envelope: d.Envelope | None = d.read_envelope(data)
        except ParseError:
            envelope = None
            # What the envelope refuses, the parser refuses too (its reason
            # may differ: the parser checks more, in its own order).
            with self.assertRaises(ParseError):
                parse_datagram(data, verify=False)
        for verify in (True, False):
            try:
                datagram = parse_datagram(data, verify=verify)
            except ParseError:
                continue
            parsed_any = True
            self.assertEqual(datagram.to_bytes(), data)
            self.assertEqual(datagram.kind, data[5])
            self.assertEqual(type(datagram).from_bytes(data, verify), datagram)
            # The envelope, read without parsing, tells the truth.
            assert envelope is not None
            statement = datagram.statement
            self.assertEqual(envelope.kind, datagram.kind)
            self.assertEqual(
                envelope.statement, None if statement is None else statement.to_bytes()
            )
            self.assertEqual(envelope.key, None if statement is None else statement.q)
        for cls in (Announcement, Goodbye, Query, Answer):
            try:
                one = cls.from_bytes(data)
            except ParseError:
                continue
            self.assertEqual(one.to_bytes(), data)
            self.assertEqual(parse_datagram(data), one)
        return parsed_any

    @settings(max_examples=500, deadline=None)
    @given(st.binary(max_size=1300))
    def test_random_bytes(self, data: bytes) -> None:
        """Arbitrary bytes either raise ParseError or parse to a datagram
        that encodes back to the same bytes."""
        self.assert_parses_canonically_or_raises(data)

    @settings(max_examples=300, deadline=None)
    @given(
        st.sampled_from(["query", "goodbye", "announcement", "answer"]),
        st.binary(max_size=64),
    )
    def test_random_body_after_header(self, kind: str, body: bytes) -> None:
        """Random bytes after a valid header (and a query's id) reach the
        field parsers; whatever parses round-trips."""
        kinds = {"announcement": 1, "goodbye": 2, "query": 3, "answer": 4}
        data = b"CRDS\x01" + bytes([kinds[kind]]) + b"q" * 8 + body
        self.assert_parses_canonically_or_raises(data)

    @settings(max_examples=300, deadline=None)
    @given(
        st.sampled_from(sorted(make_vectors().items())[1:]),
        st.binary(max_size=8),
        st.integers(0, 2000),
        st.integers(0, 40),
    )
    def test_mutated_vectors(
        self, named: tuple[str, bytes], junk: bytes, where: int, cut: int
    ) -> None:
        """Valid datagrams with bytes replaced, inserted or cut off either
        raise ParseError or parse to a datagram that encodes back to the
        same bytes; a mutation inside a signed part never passes the
        signature check."""
        name, data = named
        where %= len(data) + 1
        variants = [
            data[:where] + junk + data[where + len(junk) :],
            data[:where] + junk + data[where:],
            data[: max(0, len(data) - cut)],
        ]
        for variant in variants:
            self.assert_parses_canonically_or_raises(variant)
            if variant != data and name.startswith(("announcement", "goodbye")):
                with self.assertRaises(ParseError):
                    parse_datagram(variant)

    def test_unsigned_parts_of_answer_and_query_parse(self) -> None:
        """The round-trip checks above do see datagrams that parse: a query
        or answer with another id still parses (and round-trips)."""
        for name in ("query", "answer"):
            data = bytearray(make_vectors()[name])
            data[7] ^= 0xFF  # inside the query id
            self.assertTrue(self.assert_parses_canonically_or_raises(bytes(data)))

    def assert_parse_error(self, data: bytes, reason: str) -> None:
        """Assert that parsing ``data`` fails with ``reason``."""
        with self.assertRaises(ParseError) as caught:
            parse_datagram(data)
        self.assertEqual(caught.exception.reason, reason)

    def test_bad_signature(self) -> None:
        """A flipped bit anywhere in a signed datagram fails verification."""
        for name in ("announcement", "goodbye"):
            data = bytearray(make_vectors()[name])
            data[-1] ^= 1
            self.assert_parse_error(bytes(data), "bad-signature")
            data = bytearray(make_vectors()[name])
            data[6 + 32 + 7] ^= 1  # the last byte of the counter
            self.assert_parse_error(bytes(data), "bad-signature")

    def test_signed_by_other_key_claiming_q(self) -> None:
        """A datagram signed by another key but carrying the test key's Q is
        refused."""
        a = Announcement.from_bytes(make_vectors()["announcement"])
        newer = attrs.evolve(a, counter=99)
        forged = attrs.evolve(newer, signature=OTHER_KEY.sign(newer.signed_bytes()))
        self.assert_parse_error(forged.to_bytes(), "bad-signature")
        g = Goodbye.sign(OTHER_KEY, "lobby", 99)
        forged_goodbye = attrs.evolve(g, q=a.q)
        self.assert_parse_error(forged_goodbye.to_bytes(), "bad-signature")

    def test_forged_announcement_inside_answer(self) -> None:
        """An answer carrying a forged announcement is refused whole."""
        data = bytearray(make_vectors()["answer"])
        data[-1] ^= 1
        self.assert_parse_error(bytes(data), "bad-signature")

    def test_truncated(self) -> None:
        """Every proper prefix of every signed vector and of the answer is
        refused; a query prefix is refused unless it ends on a field boundary
        (queries are unsigned and their fields optional), and then it parses
        to exactly those bytes."""
        for name, data in make_vectors().items():
            if name == "public-key":
                continue
            for end in range(len(data)):
                if name == "query":
                    try:
                        parsed = parse_datagram(data[:end])
                    except ParseError:
                        continue
                    self.assertEqual(parsed.to_bytes(), data[:end])
                    continue
                with self.assertRaises(ParseError, msg=f"{name}[:{end}]"):
                    parse_datagram(data[:end])
        self.assertRaises(ParseError, parse_datagram, make_vectors()["query"][:13])

    def test_oversized(self) -> None:
        """Datagrams of 1200 bytes or more are refused before parsing."""
        data = make_vectors()["query"]
        self.assert_parse_error(data + bytes(1200 - len(data)), "oversized")
        with self.assertRaises(ParseError):
            Query(bytes(8), padding=1200)

    def test_unknown_version(self) -> None:
        """A version other than 1 is refused with its own reason."""
        data = bytearray(make_vectors()["announcement"])
        data[4] = 2
        self.assert_parse_error(bytes(data), "unsupported-version")

    def test_unknown_kind_and_magic(self) -> None:
        """An unknown kind byte or a wrong magic is refused."""
        data = bytearray(make_vectors()["query"])
        data[5] = 9
        self.assert_parse_error(bytes(data), "unknown-kind")
        self.assert_parse_error(b"XXXX" + bytes(data[4:]), "bad-magic")

    def test_non_canonical_order(self) -> None:
        """Fields out of ascending type order are refused."""
        q = Query(bytes(8), room="a").to_bytes() + bytes([0, 0, 0])
        self.assert_parse_error(q, "not-canonical")

    def test_trailing_bytes_after_signature_fail(self) -> None:
        """Anything appended to a signed datagram breaks its signature."""
        for name in ("announcement", "goodbye"):
            with self.assertRaises(ParseError):
                parse_datagram(make_vectors()[name] + b"\x00")

    def test_bad_room_names(self) -> None:
        """Room names that would not make an IRC channel are refused with
        a sentence."""
        for name in ("", "a b", "a,b", "a\x07", "x" * 65):
            with self.assertRaises(ParseError) as caught:
                d.check_room_name(name)
            self.assertTrue(str(caught.exception).endswith("."))


class HelperTests(SynchronousTestCase):
    """Fingerprints, addresses and query matching."""

    def test_fingerprints(self) -> None:
        """The fingerprint is hex SHA-256 of the raw key; the short one is
        its first 16 digits."""
        q = d.raw_public_key(TEST_KEY)
        self.assertEqual(d.short_fingerprint(q), hashlib.sha256(q).hexdigest()[:16])
        self.assertEqual(
            d.fingerprint_prefix_from_hex(d.short_fingerprint(q).upper()),
            hashlib.sha256(q).digest()[:8],
        )
        with self.assertRaises(ParseError):
            d.fingerprint_prefix_from_hex("xyz")
        with self.assertRaises(ParseError):
            d.fingerprint_prefix_from_hex("abc")

    def test_addresses(self) -> None:
        """Addresses read and print as host:port, IPv6 in brackets."""
        self.assertEqual(
            str(RoomAddress.parse("[2001:DB8::1]:6697")), "[2001:db8::1]:6697"
        )
        self.assertEqual(str(RoomAddress.parse("10.0.0.1:1")), "10.0.0.1:1")
        for bad in ("10.0.0.1", "host:6697", "10.0.0.1:0", "[::1]"):
            with self.assertRaises(ParseError):
                RoomAddress.parse(bad)

    def test_query_matches(self) -> None:
        """A query matches by room name and by key fingerprint prefix."""
        a = Announcement.from_bytes(make_vectors()["announcement"])
        prefix = hashlib.sha256(a.q).digest()[:4]
        self.assertTrue(Query(bytes(8)).matches(a))
        self.assertTrue(
            Query(bytes(8), room="lobby", fingerprint_prefix=prefix).matches(a)
        )
        self.assertFalse(Query(bytes(8), room="other").matches(a))
        other = bytes([prefix[0] ^ 1]) + prefix[1:]
        self.assertFalse(Query(bytes(8), fingerprint_prefix=other).matches(a))

    def test_answer_lifetime_is_capped(self) -> None:
        """An answer can shorten an announcement's lifetime, never extend it."""
        a = Announcement.from_bytes(make_vectors()["announcement"])
        self.assertEqual(Answer(bytes(8), 10_000, a).lifetime, 180)
        self.assertEqual(Answer(bytes(8), 5, a).lifetime, 5)

    def test_padded_query(self) -> None:
        """padded_to makes the query exactly the asked size when it can."""
        self.assertEqual(len(Query(bytes(8)).padded_to(400).to_bytes()), 400)
        self.assertEqual(len(Query(bytes(8)).padded_to(5000).to_bytes()), 1199)
        self.assertIsNone(Query(bytes(8)).padded_to(10).padding)
