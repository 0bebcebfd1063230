"""Splitting long messages at the host's LINELEN: examples and properties."""

from hypothesis import given
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase

from chatroom.client.split import (
    MIN_BUDGET,
    estimated_source,
    split_text,
    text_budget,
)


class SplitTests(SynchronousTestCase):
    def test_fits(self):
        self.assertEqual(split_text("hello world", 100), ["hello world"])
        self.assertEqual(split_text("", 100), [""])

    def test_at_the_last_space(self):
        self.assertEqual(
            split_text("aaaa bbbb cccc dddd", 16), ["aaaa bbbb cccc", "dddd"]
        )

    def test_long_word_cut_at_character_boundary(self):
        text = "é" * 20  # 2 bytes each
        pieces = split_text(text, 17)
        self.assertEqual(pieces, ["é" * 8, "é" * 8, "é" * 4])

    def test_four_byte_characters(self):
        pieces = split_text("x" + "🙂" * 10, 16)
        self.assertEqual("".join(pieces), "x" + "🙂" * 10)
        self.assertTrue(all(len(p.encode()) <= 16 for p in pieces))

    def test_budget(self):
        source = "alice!~alice@127.0.0.1"
        budget = text_budget(512, source, "#lobby")
        line = ":%s PRIVMSG #lobby :%s\r\n" % (source, "x" * budget)
        self.assertEqual(len(line.encode()), 512)

    def test_estimate_is_never_short(self):
        self.assertLess(
            text_budget(512, estimated_source("alice"), "#lobby"),
            text_budget(512, "alice!~alice@" + "h" * 63, "#lobby"),
        )

    def test_tiny_budget_refused(self):
        self.assertRaises(ValueError, split_text, "x", MIN_BUDGET - 1)

    @given(st.text(), st.integers(MIN_BUDGET, 600))
    def test_nothing_lost_and_every_piece_fits(self, text, budget):
        pieces = split_text(text, budget)
        self.assertTrue(all(len(p.encode("utf-8")) <= budget for p in pieces))
        # Rejoined with the spaces cut at, the text is whole again.
        rebuilt = pieces[0]
        for piece in pieces[1:]:
            joined = rebuilt + " " + piece
            rebuilt = joined if text.startswith(joined) else rebuilt + piece
        self.assertEqual(rebuilt, text)
