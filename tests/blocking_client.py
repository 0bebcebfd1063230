"""A blocking IRC-over-TLS client on the standard library, for process tests.

It pins the room key the way any non-Twisted client can: after the
handshake, before sending a byte, it compares the Ed25519 key in the server
certificate with the expected one.
"""

import socket
import ssl
import time

from cryptography import x509

from chatroom.core.ircline import format_line, parse_line
from chatroom.identity import public_key_of


class BlockingClient:
    """One connection; every wait is bounded by C{timeout} seconds."""

    def __init__(self, port, public_key, nick, caps=(), timeout=30.0):
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        raw = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        self.sock = context.wrap_socket(raw)
        der = self.sock.getpeercert(binary_form=True)
        if public_key_of(x509.load_der_x509_certificate(der)) != public_key:
            self.sock.close()
            raise AssertionError("the server's key is not the room key")
        self.timeout = timeout
        self.buffer = b""
        self.messages = []
        if caps:
            self.send("CAP", "REQ", " ".join(caps))
        self.send("NICK", nick)
        self.send("USER", nick, "0", "*", nick)
        if caps:
            self.send("CAP", "END")
        self.wait_for(lambda m: m.command == "001")

    def send(self, command, *params):
        self.sock.sendall(format_line(command, *params))

    def read(self):
        """Read one chunk (bounded wait); parse and keep what arrived."""
        data = self.sock.recv(65536)
        if not data:
            raise ConnectionError("connection closed")
        self.buffer += data
        *lines, self.buffer = self.buffer.split(b"\r\n")
        for line in lines:
            if line:
                message = parse_line(line)
                if message.command == "PING":
                    self.send("PONG", *message.params)
                self.messages.append(message)

    def wait_for(self, predicate, since=0):
        """Read until a message kept from index C{since} on matches."""
        deadline = time.monotonic() + self.timeout
        seen = since
        while True:
            for message in self.messages[seen:]:
                if predicate(message):
                    return message
            seen = len(self.messages)
            if time.monotonic() > deadline:
                raise AssertionError("timed out waiting")
            self.read()

    def read_until_closed(self):
        """Keep everything the server sends until the connection drops."""
        try:
            while True:
                self.read()
        except (ConnectionError, OSError, ssl.SSLError):
            pass

    def close(self):
        self.sock.close()
