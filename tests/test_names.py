"""Tests for chatroom.core.names: one rule per name and identifier."""

import hashlib

from hypothesis import given
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase

from chatroom.core import discovery, ircline
from chatroom.core.errors import ParseError
from chatroom.core.names import (
    casefold,
    fingerprint,
    make_msgid,
    parse_msgid,
    short_fingerprint,
    valid_room_name,
)


class NameTests(SynchronousTestCase):
    """Room names, msgids and fingerprints."""

    def test_room_names(self):
        """Letters, digits and C{-_.} only, within the length limit."""
        self.assertTrue(valid_room_name("lobby-2_b.c", 64))
        for bad in ("", "café", "a b", "a,b", "#a", "x" * 65):
            self.assertFalse(valid_room_name(bad, 64), bad)

    def test_casefold_ascii_only(self):
        """Only ASCII letters fold (C{CASEMAPPING=ascii})."""
        self.assertEqual(casefold("LoBBY"), "lobby")
        self.assertEqual(casefold("ÉA"), "Éa")

    @given(st.text(alphabet="abc:-_", max_size=10), st.integers(0, 2**63))
    def test_msgid_round_trip(self, room, seq):
        """Every msgid made parses back to its room and number."""
        self.assertEqual(parse_msgid(make_msgid(room, seq)), (room, seq))

    def test_msgid_refused(self):
        """No colon, no digits or non-ASCII digits: not a msgid."""
        for bad in ("lobby", "lobby:", "lobby:x1", "lobby:\u0661"):
            self.assertIsNone(parse_msgid(bad), bad)

    def test_fingerprints(self):
        """The fingerprint is hex SHA-256 of the raw key; the short one its
        first 16 digits."""
        q = bytes(range(32))
        self.assertEqual(fingerprint(q), hashlib.sha256(q).hexdigest())
        self.assertEqual(short_fingerprint(q), fingerprint(q)[:16])

    def test_one_parse_error(self):
        """The IRC codec and the discovery codec raise the same error."""
        self.assertIs(ircline.ParseError, ParseError)
        self.assertIs(discovery.ParseError, ParseError)
        self.assertTrue(issubclass(ircline.LineTooLong, ParseError))
        self.assertEqual(ircline.LineTooLong().reason, "too-long")
