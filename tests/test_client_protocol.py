"""The client protocol alone, over a StringTransport: raw IRC lines in and out."""

from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.trial.unittest import SynchronousTestCase

from chatroom.client.protocol import RoomClientProtocol
from chatroom.core.ircline import parse_line


class Recorder:
    def __init__(self):
        self.messages = []
        self.lost = []

    def message_received(self, message):
        self.messages.append(message)

    def connection_lost(self, reason):
        self.lost.append(reason)


class ClientProtocolTestsMixin:
    def connect(self, nick="alice", **kwargs):
        self.clock = Clock()
        self.recorder = Recorder()
        self.transport = StringTransport()
        self.protocol = RoomClientProtocol(nick, self.recorder, **kwargs)
        self.protocol.makeConnection(self.transport)
        return self.protocol

    def sent(self):
        """The lines the client wrote since last asked, parsed."""
        data = self.transport.value()
        self.transport.clear()
        return [parse_line(line) for line in data.split(b"\r\n") if line]

    def receive(self, *lines):
        for line in lines:
            self.protocol.dataReceived(line.encode("utf-8") + b"\r\n")


class RelayedLineTests(ClientProtocolTestsMixin, SynchronousTestCase):
    def test_long_relayed_message_is_kept(self):
        """A member may send a 512-byte line; relayed with its source in
        front, it is longer than 512 bytes and still reaches the user
        (issue 9 item 5: it used to be dropped as malformed)."""
        self.connect()
        text = "y" * (510 - len("PRIVMSG #lobby :"))
        self.receive("@msgid=lobby:7 :bob!~bob@192.0.2.1 PRIVMSG #lobby :" + text)
        (message,) = self.recorder.messages
        self.assertEqual(message.params, ("#lobby", text))
