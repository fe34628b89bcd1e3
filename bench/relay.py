"""A TCP relay on 127.0.0.1 that emulates a network round trip: ``relay.py TARGET_PORT RTT``.

Every byte is held for RTT/2 in each direction, and a new connection's first bytes wait
one more RTT, as for the SYN / SYN-ACK exchange of a real network. Bytes are relayed as
they come (a stream keeps its pace, only late by RTT/2). Prints ``port N`` once listening,
then relays until its standard input closes, SIGTERM, or ``--max-seconds``.

Bounded everywhere: connections (``--max-connections``), bytes held per direction (the
reader waits while a direction holds more than ``HELD_LIMIT``), idle connections
(``--idle-seconds``) and the relay's own life time. Only 127.0.0.1 is used.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
import sys
import time

HOST = "127.0.0.1"
READ_SIZE = 65536
HELD_LIMIT = 4 * 2**20  # bytes held in one direction before the reader waits


class Direction:
    """One direction of one connection: read, hold for ``delay``, write."""

    def __init__(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        delay: float,
        first_delay: float,
        idle: float,
    ) -> None:
        self.reader, self.writer = reader, writer
        self.delay, self.first_delay, self.idle = delay, first_delay, idle
        self.queue: asyncio.Queue[tuple[float, bytes]] = asyncio.Queue()
        self.held = 0
        self.room = asyncio.Event()
        self.room.set()

    async def read(self) -> None:
        loop = asyncio.get_running_loop()
        not_before = loop.time() + self.first_delay  # the handshake's round trip
        try:
            while True:
                await self.room.wait()
                data = await asyncio.wait_for(self.reader.read(READ_SIZE), self.idle)
                due = max(loop.time(), not_before) + self.delay
                self.queue.put_nowait((due, data))
                if not data:
                    return
                self.held += len(data)
                if self.held > HELD_LIMIT:
                    self.room.clear()
        except (OSError, TimeoutError):
            self.queue.put_nowait((loop.time(), b""))

    async def write(self) -> None:
        loop = asyncio.get_running_loop()
        with contextlib.suppress(OSError):
            while True:
                due, data = await self.queue.get()
                if (wait := due - loop.time()) > 0:
                    await asyncio.sleep(wait)
                if not data:
                    with contextlib.suppress(OSError):
                        self.writer.write_eof()
                    return
                self.writer.write(data)
                await self.writer.drain()
                self.held -= len(data)
                if self.held <= HELD_LIMIT:
                    self.room.set()


class Relay:
    """Listens on 127.0.0.1 and relays each connection to ``target_port`` with ``rtt``."""

    def __init__(
        self, target_port: int, rtt: float, max_connections: int = 256, idle: float = 120.0
    ) -> None:
        self.target_port = target_port
        self.rtt = rtt
        self.idle = idle
        self.accepted = 0
        self.slots = asyncio.Semaphore(max_connections)
        self.server: asyncio.Server | None = None

    async def start(self) -> int:
        self.server = await asyncio.start_server(self.serve, HOST, 0)
        return self.server.sockets[0].getsockname()[1]

    async def serve(self, client_reader, client_writer) -> None:
        self.accepted += 1
        if self.slots.locked():
            client_writer.close()
            return
        async with self.slots:
            try:
                server_reader, server_writer = await asyncio.open_connection(HOST, self.target_port)
            except OSError:
                client_writer.close()
                return
            half = self.rtt / 2
            up = Direction(client_reader, server_writer, half, self.rtt, self.idle)
            down = Direction(server_reader, client_writer, half, 0.0, self.idle)
            tasks = [
                asyncio.create_task(job()) for job in (up.read, up.write, down.read, down.write)
            ]
            try:
                await asyncio.gather(*tasks)
            except asyncio.CancelledError:
                pass  # the relay stops: end quietly
            finally:
                for task in tasks:
                    task.cancel()
                for writer in (client_writer, server_writer):
                    writer.close()
                    with contextlib.suppress(Exception):
                        await writer.wait_closed()

    async def stop(self) -> None:
        if self.server is not None:
            self.server.close()


async def main(arguments: argparse.Namespace) -> None:
    relay = Relay(arguments.target_port, arguments.rtt, arguments.max_connections)
    port = await relay.start()
    print(f"port {port}", flush=True)
    loop = asyncio.get_running_loop()
    stopping = asyncio.Event()
    loop.add_signal_handler(signal.SIGTERM, stopping.set)
    loop.add_signal_handler(signal.SIGINT, stopping.set)
    # the parent holds our standard input: when it goes, so do we
    loop.add_reader(sys.stdin.fileno(), lambda: sys.stdin.read(1) or stopping.set())
    started = time.monotonic()
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stopping.wait(), arguments.max_seconds)
    await relay.stop()
    print(f"relayed {relay.accepted} connections in {time.monotonic() - started:.0f} s", flush=True)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("target_port", type=int)
    parser.add_argument("rtt", type=float, help="round-trip time to emulate, in seconds")
    parser.add_argument("--max-connections", type=int, default=256)
    parser.add_argument("--max-seconds", type=float, default=900.0)
    asyncio.run(main(parser.parse_args()))
