"""ssh ProxyCommand that relays to HOST PORT and breaks the connection once more than CUT bytes went upstream on it:
a connection lost mid-transfer, as ssh and sshd see it (the TCP connection closes under them).

    ssh -o ProxyCommand='python3 ssh_cut_relay.py %h %p 1500000' ...
"""

from __future__ import annotations

import os
import socket
import sys
import threading


def main() -> None:
    host, port, cut = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    sock = socket.create_connection((host, port))

    def downstream() -> None:
        while data := sock.recv(1 << 16):
            os.write(1, data)
        os._exit(0)

    threading.Thread(target=downstream, daemon=True).start()
    sent = 0
    while data := os.read(0, 1 << 16):
        sent += len(data)
        if sent > cut:
            sock.close()  # the cut: nothing more reaches the host
            os._exit(1)
        sock.sendall(data)
    sock.shutdown(socket.SHUT_WR)
    threading.Event().wait()


if __name__ == "__main__":
    main()
