"""A real host on 127.0.0.1 for trial tests, and clients that connect to it."""

import os

from twisted.internet import defer, endpoints, protocol, reactor

from chatroom.client.protocol import RoomClientProtocol
from chatroom.history import HistoryStore
from chatroom.host import Limits
from chatroom.identity import load_or_create
from chatroom.service import HostService, data_paths
from chatroom.tls import PinnedClientCreator


class Recorder:
    """A client listener that keeps every live room message."""

    def __init__(self):
        self.messages = []

    def message_received(self, message):
        if message.command == "PRIVMSG" and "batch" not in message.tags:
            self.messages.append(message)

    def connection_lost(self, reason):
        pass


class RunningHostMixin:
    """For a trial C{TestCase}: a host service with TLS on 127.0.0.1.

    Call L{start_host} (again after L{stop_host} to restart on the same data
    directory, on a new port); L{connect} makes a pinned client.
    """

    rooms = ("lobby",)

    def make_data_dir(self):
        self.data_dir = self.mktemp()
        os.makedirs(self.data_dir)
        self.key_path, self.db_path = data_paths(self.data_dir)
        self.identity = load_or_create(self.key_path)
        self.service = None

    @defer.inlineCallbacks
    def start_host(self, limits=Limits(flood_rate=0), discovery=None):
        """Start the host (announcing with C{discovery} settings, if any);
        fires with its TLS port number."""
        self.service = HostService(
            reactor,
            self.identity,
            HistoryStore(self.db_path),
            self.rooms,
            tls_port=0,
            tls_interface="127.0.0.1",
            limits=limits,
            discovery=discovery,
        )
        self.service.startService()
        self.addCleanup(self.stop_host)
        (port,) = yield self.service.listening_ports()
        return port.getHost().port

    def stop_host(self):
        service, self.service = self.service, None
        if service is not None and service.running:
            return service.stopService()

    @defer.inlineCallbacks
    def connect(self, port, nick, public_key=None):
        """A registered client; fires with (protocol, recorder)."""
        recorder = Recorder()
        creator = PinnedClientCreator(public_key or self.identity.public_key)
        endpoint = endpoints.wrapClientTLS(
            creator, endpoints.TCP4ClientEndpoint(reactor, "127.0.0.1", port)
        )
        client = yield endpoint.connect(
            protocol.Factory.forProtocol(lambda: RoomClientProtocol(nick, recorder))
        )
        self.addCleanup(self.disconnect, client)
        yield client.registered
        return client, recorder

    def disconnect(self, client):
        """Close C{client}'s connection; fires when it is closed."""
        if client.transport.connected:
            lost = defer.Deferred()
            client.listener.connection_lost = lambda reason: lost.callback(None)
            client.transport.loseConnection()
            return lost
