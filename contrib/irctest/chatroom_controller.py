"""An irctest controller for chatroom (github: progval/irctest).

irctest keeps one controller per server in C{irctest/controllers/}; this one
lives here, beside the code it tests.  It starts C{twistd -n chatroom} with a
plain-text listener on the loopback address irctest chose, no discovery,
rooms opened by joining them, and flood control off (irctest sends bursts).
See C{docs/conformance.rst} for the one-line command that runs the suite.
"""

import atexit
import os
import sys
from pathlib import Path
from typing import Optional, Type

from irctest.basecontrollers import BaseServerController, DirectoryBasedController
from irctest.cases import BaseServerTestCase
from irctest.runner import NotImplementedByController

#: The twistd of the virtualenv that has chatroom's dependencies, and the
#: checkout to run.
TWISTD = os.environ.get("CHATROOM_TWISTD", str(Path(sys.executable).parent / "twistd"))
CHECKOUT = Path(__file__).resolve().parents[2]

#: Every host this controller started.  irctest does not tear a test down
#: when it is skipped in its setUp (after the host started), so the hosts
#: still running when pytest exits are stopped here.
_STARTED = []


@atexit.register
def _stop_leftovers() -> None:
    for proc in _STARTED:
        if proc.poll() is None:
            proc.terminate()
    for proc in _STARTED:
        try:
            proc.wait(timeout=10)
        except Exception:
            proc.kill()


class ChatroomController(BaseServerController, DirectoryBasedController):
    software_name = "chatroom"
    supported_sasl_mechanisms: set = set()
    supports_sts = False

    def run(
        self,
        hostname: str,
        port: int,
        *,
        password: Optional[str],
        ssl: bool,
        run_services: bool,
        faketime: Optional[str],
        websocket_hostname: Optional[str],
        websocket_port: Optional[int],
    ) -> None:
        if websocket_hostname is not None or websocket_port is not None:
            raise NotImplementedByController("Websocket")
        if password is not None:
            raise NotImplementedByController("PASS")
        if ssl:
            raise NotImplementedByController("TLS with irctest's certificate")
        if run_services:
            raise NotImplementedByController("services")
        assert self.proc is None
        self.port = port
        self.hostname = hostname
        self.create_config()
        assert self.directory
        data_dir = self.directory / "data"
        data_dir.mkdir()
        # The operator irctest logs in as.
        oper_file = self.directory / "operators"
        with self.open_file("operators") as fd:
            fd.write("operuser operpassword\n")
        oper_file.chmod(0o600)
        env = dict(os.environ, PYTHONPATH=str(CHECKOUT))
        self.proc = self.execute(
            [
                TWISTD,
                "--nodaemon",
                "--pidfile",
                "",
                "--logfile",
                str(self.directory / "twistd.log"),
                "chatroom",
                "--data-dir",
                str(data_dir),
                "--port",
                "0",
                "--interface",
                "127.0.0.1",
                # Loopback only, whatever address irctest picked.
                "--listen",
                "tcp:%d:interface=127.0.0.1" % (port,),
                "--server-name",
                "My.Little.Server",
                "--no-discovery",
                "--open-rooms",
                "--flood-rate",
                "0",
                "--max-opened-per-hour",
                "100000",
                "--max-rooms",
                "100000",
                "--oper-file",
                str(oper_file),
            ],
            cwd=str(self.directory),
            env=env,
        )
        _STARTED.append(self.proc)
        self.wait_for_port()

    def registerUser(
        self,
        case: BaseServerTestCase,
        username: str,
        password: Optional[str] = None,
    ) -> None:
        raise NotImplementedByController("account registration")


def get_irctest_controller_class() -> Type[ChatroomController]:
    return ChatroomController
