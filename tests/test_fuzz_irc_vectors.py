"""The public IRC parser test vectors against our parser and serializer.

The vectors are the ircdocs C{parser-tests} (CC0), shipped on PyPI as
C{irc-parser-tests}: C{msg-split.yaml} (line -> tags, source, verb,
params) and C{msg-join.yaml} (atoms -> the acceptable lines).  The package
loads its YAML files with PyYAML, its own declared dependency.

One deliberate normalisation, not a skip: our parser upper-cases the
command (IRC commands are case-insensitive, and the connection dispatches
on the upper-case name), so verbs are compared upper-cased.  Every vector
passes otherwise; none is skipped.
"""

from twisted.trial.unittest import SynchronousTestCase

from chatroom.core.ircline import format_line, parse_line

try:
    from parser_tests.data import msg_join, msg_split
except ImportError:  # pragma: no cover - the test extra is not installed
    msg_join = msg_split = None

_SKIP = (
    "the irc-parser-tests package is not installed: pip install '.[test]'"
    if msg_split is None
    else None
)


class MessageSplitTests(SynchronousTestCase):
    """msg-split.yaml: every input line parses to the expected atoms."""

    skip = _SKIP

    def test_vectors(self):
        tests = msg_split["tests"]
        self.assertGreater(len(tests), 30)
        for vector in tests:
            atoms = vector["atoms"]
            message = parse_line(vector["input"].encode("utf-8"))
            expected = (
                atoms.get("tags") or {},
                atoms.get("source"),
                atoms["verb"].upper(),
                tuple(atoms.get("params") or ()),
            )
            self.assertEqual(
                (message.tags, message.prefix, message.command, message.params),
                expected,
                vector["input"],
            )
            # And what we format from it parses back to the same message.
            line = format_line(
                message.command,
                *message.params,
                prefix=message.prefix,
                tags=message.tags,
            )
            self.assertEqual(parse_line(line[:-2]), message, vector["input"])


class MessageJoinTests(SynchronousTestCase):
    """msg-join.yaml: what we format from the atoms is an accepted line."""

    skip = _SKIP

    def test_vectors(self):
        tests = msg_join["tests"]
        self.assertGreater(len(tests), 15)
        for vector in tests:
            atoms = vector["atoms"]
            line = format_line(
                atoms["verb"],
                *(atoms.get("params") or ()),
                prefix=atoms.get("source"),
                tags=atoms.get("tags"),
            )
            self.assertTrue(line.endswith(b"\r\n"))
            self.assertIn(
                line[:-2].decode("utf-8"), vector["matches"], vector.get("desc")
            )
