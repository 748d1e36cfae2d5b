"""A throwaway TCP proxy in front of a real server (PostgreSQL, Redis), so a
test can make the network fail without stopping the shared server or
mocking its client.

``stop`` closes the listener and cuts every open connection, as a server
crash would (``Proxy(port)`` brings the address back); ``cut_next(n)``
makes the next ``n`` requests a client sends die unanswered on their
connection, as a connection lost mid-command does, while new connections
work; ``answer_next(reply, n)`` answers them with ``reply`` instead of
forwarding them (an error the server could send, such as Redis's
``-READONLY``).
"""

from __future__ import annotations

import socket
import threading


class Proxy:
    """Forwards 127.0.0.1:<port> to ``target``."""

    def __init__(self, target: tuple[str, int], port: int = 0) -> None:
        self.target = target
        self.listener = socket.create_server(("127.0.0.1", port))
        self.port = self.listener.getsockname()[1]
        self.sockets: list[socket.socket] = []
        self._lock = threading.Lock()
        self._faults: list[bytes | None] = []  # for each next request: None cuts it, bytes answer it
        #: Requests cut so far by ``cut_next``, and answered by ``answer_next``.
        self.cut = self.answered = 0
        threading.Thread(target=self._accept, daemon=True).start()

    def cut_next(self, n: int = 1) -> None:
        with self._lock:
            self._faults = [None] * n

    def answer_next(self, reply: bytes, n: int = 1) -> None:
        with self._lock:
            self._faults = [reply] * n

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            upstream = socket.create_connection(self.target)
            self.sockets += [client, upstream]
            threading.Thread(target=self._pump, args=(client, upstream, True), daemon=True).start()
            threading.Thread(target=self._pump, args=(upstream, client, False), daemon=True).start()

    def _fault(self) -> tuple[bool, bytes | None]:
        """Whether the next request meets a fault, and which."""
        with self._lock:
            if not self._faults:
                return False, None
            reply = self._faults.pop(0)
            if reply is None:
                self.cut += 1
            else:
                self.answered += 1
            return True, reply

    def _pump(self, source: socket.socket, sink: socket.socket, from_client: bool) -> None:
        try:
            while data := source.recv(65536):
                faulty, reply = self._fault() if from_client else (False, None)
                if faulty and reply is None:
                    break  # the request is dropped, and both ends see the connection close
                if faulty:
                    source.sendall(reply)
                    continue
                sink.sendall(data)
        except OSError:
            pass
        finally:
            for s in (source, sink):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def stop(self) -> None:
        try:
            self.listener.shutdown(socket.SHUT_RDWR)  # wakes the thread blocked in accept()
        except OSError:
            pass
        self.listener.close()
        for s in self.sockets:
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            s.close()
