"""The shim's HTTP/1.1 front: asyncio + h11, in one thread; handlers run in bounded pools.

Why not a thread-per-connection or a waitress-style server: report printing must keep
answering while slow, idle or hostile callers hold connections (bench/README.md has the
figures). Here a connection costs a coroutine, not a thread, and:
- the allow-list is applied at accept: a refused caller gets a 403 and is closed at once;
- at most `max_connections_per_source` connections per address, `max_connections` in all;
- the whole request head and body must arrive within `request_timeout` (a caller sending one
  header line every few seconds is cut off, not kept alive by its trickle);
- an idle keep-alive connection is closed after `keepalive_timeout`;
- each route runs in its pool (lookups apart); a full pool answers "busy" at once;
- every refusal is the spec's JSON, including malformed requests and timeouts.
"""

from __future__ import annotations

import asyncio
import collections
import resource
import socket
import threading
from urllib.parse import unquote

import h11
import structlog

from ..config.model import ShimConfig
from ..metrics import HTTP_REQUESTS
from .http import Response, RouteTable, ShimApp, phrase, reply
from .pools import BoundedPool, Busy
from .protocol import ascii_query, escape_target, header, protocol_check
from .ratelimit import MAX_WAIT, Buckets
from .refusals import MAX_HEAD, SUMMARY_EVERY, RefusalLog, busy, malformed, raw_response

log = structlog.get_logger("dicomgate.shim")

READ_SIZE = 64 * 1024
SEND_TIMEOUT = 10.0  # a caller that does not read its answer is dropped after this
# After an answer on a connection we close, what the caller still sends is read and discarded
# until it closes (closing with unread input resets the connection and the answer could be
# lost). A caller that reads its answer closes at once. One refused at accept or cut off by
# the request deadline is held up to TARPIT (a "tarpit"): an attacker reconnecting in a loop
# is slowed to one attempt per connection per TARPIT, and its refusals stop costing CPU.
LINGER = 2.0
TARPIT = 30.0
MAX_REFUSING = 4096  # refusals held at once; past that, refused connections are reset


class HttpFront:
    def __init__(self, app: ShimApp, routes: RouteTable, config: ShimConfig,
                 pools: dict[str, BoundedPool]):
        self.app = app
        self.routes = routes
        self.config = config
        self.pools = pools
        self.refusals = RefusalLog()
        self.buckets = Buckets(config.rate, config.burst)
        self._sock: socket.socket | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._stopping: asyncio.Event | None = None
        self._per_source: collections.Counter[str] = collections.Counter()
        self._open: set[asyncio.StreamWriter] = set()
        self._tasks: set[asyncio.Task] = set()
        self._refusing = 0
        self._busy = 0  # requests being answered: shutdown waits for them

    @property
    def port(self) -> int:
        assert self._sock is not None
        return int(self._sock.getsockname()[1])

    def start(self) -> None:
        """Binds in the caller's thread (so a busy port fails `dicomgate run` at once)."""
        _raise_fd_limit(self.config.max_connections)
        family = socket.AF_INET6 if ":" in self.config.bind else socket.AF_INET
        self._sock = socket.create_server((self.config.bind, self.config.port), family=family,
                                          backlog=1024)
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_until_complete,
                                        args=(self._main(),), name="shim-http", daemon=True)
        self._thread.start()

    def stop(self, grace: float = 5.0) -> None:
        if self._loop is not None and self._stopping is not None:
            self._loop.call_soon_threadsafe(self._stopping.set)
        if self._thread is not None:
            self._thread.join(timeout=grace + 2)

    def alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    async def _main(self) -> None:
        self._stopping = asyncio.Event()
        server = await asyncio.start_server(self._connection, sock=self._sock, limit=READ_SIZE)
        flusher = asyncio.create_task(self._flush_refusals())
        try:
            await self._stopping.wait()
        finally:
            server.close()
            for _ in range(50):  # answers in progress finish (5 s at most)
                if not self._busy:
                    break
                await asyncio.sleep(0.1)
            for w in list(self._open):
                w.transport.abort()
            if self._tasks:
                _, pending = await asyncio.wait(list(self._tasks), timeout=2)
                for t in pending:
                    t.cancel()
            flusher.cancel()
            self.refusals.flush()

    async def _flush_refusals(self) -> None:
        while True:
            await asyncio.sleep(SUMMARY_EVERY)
            self.refusals.flush()

    # -- connections --------------------------------------------------------------------
    async def _connection(self, reader: asyncio.StreamReader,
                          writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        if task is not None:
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        peer = writer.get_extra_info("peername") or ("", 0)
        client = str(peer[0])
        local = str((writer.get_extra_info("sockname") or ("",))[0])
        refusal = self._admission(client)
        if refusal is not None:
            await self._refuse(reader, writer, refusal, client)
            return
        self._per_source[client] += 1
        self._open.add(writer)
        try:
            await self._serve(reader, writer, client, local)
        except (ConnectionError, OSError, asyncio.IncompleteReadError):
            pass  # the caller went away
        except Exception as exc:  # a bug here must not kill the server nor go unseen
            log.exception("shim.connection_failed", client=client, error_type=type(exc).__name__)
        finally:
            self._open.discard(writer)
            self._per_source[client] -= 1
            if not self._per_source[client]:
                del self._per_source[client]
            writer.transport.abort()

    def _admission(self, client: str) -> tuple[str, Response] | None:
        """Applied at accept, before a byte is read."""
        if not self.app.allowed(client) and not self.routes.any_open():
            return "not_allowed", reply(403, f"caller {client} is not in shim.allow")
        if len(self._open) >= self.config.max_connections:
            return "server_full", reply(503, f"too many open connections "
                                             f"({self.config.max_connections}, "
                                             "shim.max_connections); try again later")
        if self._per_source[client] >= self.config.max_connections_per_source:
            return "source_full", reply(503, f"too many open connections from {client} "
                                             f"({self.config.max_connections_per_source}, "
                                             "shim.max_connections_per_source); close idle "
                                             "connections or try again later")
        return None

    async def _refuse(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                      refusal: tuple[str, Response], client: str) -> None:
        reason, resp = refusal
        self.refusals.add(reason, client)
        if self._refusing >= MAX_REFUSING:
            writer.transport.abort()
            return
        self._refusing += 1
        try:
            await self._send_and_close(reader, writer, resp)
        finally:
            self._refusing -= 1

    async def _send_and_close(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                              resp: Response, hold: float = TARPIT) -> None:
        """Answer, then read and discard until the caller closes (at most `hold` s). Held
        callers (a tarpit) see no end of the answer; others get it at once (FIN)."""
        writer.write(raw_response(resp))
        if hold <= LINGER:
            _write_eof(writer)
        await _linger(reader, writer, hold)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                     client: str, local: str) -> None:
        loop = asyncio.get_running_loop()
        conn = h11.Connection(h11.SERVER, max_incomplete_event_size=MAX_HEAD)
        deadline = loop.time() + self.config.request_timeout  # from accept: head and body
        while True:
            try:
                async with asyncio.timeout_at(deadline):
                    got = await self._read_request(conn, reader, writer)
            except TimeoutError:
                self.refusals.add("request_timeout", client)
                await self._send_and_close(reader, writer, reply(
                    408, f"request head and body not received within "
                         f"{self.config.request_timeout:g}s (shim.request_timeout)"))
                return
            except h11.RemoteProtocolError as exc:
                self.refusals.add("malformed", client)
                await self._send_and_close(reader, writer, malformed(exc), LINGER)
                return
            if got is None:
                return  # closed by the caller between requests
            resp = await self._admit(got, client)
            if resp is None:
                resp = await self._answer(got, client, local)
            if not await self._send(conn, writer, got[0], resp, got[3]) or got[3]:
                _write_eof(writer)  # the caller reading to EOF sees it now, not after LINGER
                await _linger(reader, writer, LINGER)
                return
            conn.start_next_cycle()
            if not conn.trailing_data[0]:  # idle keep-alive: wait for the next request
                try:
                    async with asyncio.timeout(self.config.keepalive_timeout):
                        data = await reader.read(READ_SIZE)
                except TimeoutError:
                    return  # reaped
                if not data:
                    return
                conn.receive_data(data)
            deadline = loop.time() + self.config.request_timeout

    async def _read_request(self, conn: h11.Connection, reader: asyncio.StreamReader,
                            writer: asyncio.StreamWriter
                            ) -> tuple[h11.Request, bytes, bool, bool] | None:
        """(request, body, body too large, close after answering) or None when the caller
        closed. h11 parses; the checks it does not make are added (protocol.protocol_check)."""
        request: h11.Request | None = None
        chunks: list[bytes] = []
        size = 0
        head = bytearray(conn.trailing_data[0])  # what arrived before the request line ended
        close = False
        while True:
            event = conn.next_event()
            if event is h11.NEED_DATA:
                data = await reader.read(READ_SIZE)
                if request is None:
                    data = escape_target(data) if conn.their_state is h11.IDLE else data
                    head += data
                    if len(head) > MAX_HEAD and b"\r\n\r\n" not in head[:MAX_HEAD + 4] \
                            and b"\n\n" not in head[:MAX_HEAD + 2]:
                        raise h11.RemoteProtocolError("head too large", 431)
                conn.receive_data(data)
            elif isinstance(event, h11.Request):
                request = event
                close = protocol_check(event, bytes(head), len(head) -
                                       len(conn.trailing_data[0]))
                length = header(event.headers, b"content-length")
                if length.isdigit() and int(length[:20]) > self.config.max_body:
                    return request, b"", True, True
                if conn.they_are_waiting_for_100_continue:
                    writer.write(conn.send(h11.InformationalResponse(
                        status_code=100, reason=b"Continue", headers=[])))
            elif isinstance(event, h11.Data):
                size += len(event.data)
                if size > self.config.max_body:
                    assert request is not None
                    return request, b"", True, True
                chunks.append(event.data)
            elif isinstance(event, h11.EndOfMessage):
                assert request is not None
                return request, b"".join(chunks), False, close
            elif isinstance(event, h11.ConnectionClosed):
                if request is not None:  # closed half-way: nothing to answer
                    raise ConnectionResetError
                return None

    async def _admit(self, got: tuple[h11.Request, bytes, bool, bool],
                     client: str) -> Response | None:
        """The per-source rate limit: waits for the caller's tokens (so a flood from one
        address slows itself down), or refuses when that would take longer than MAX_WAIT."""
        route = self.routes.find(_path(got[0].target))
        wait = self.buckets.take(client, route.cost if route else 1.0)
        if wait is None:
            self.refusals.add("rate_limited", client)
            await asyncio.sleep(MAX_WAIT)  # the refusal itself is slow: no busy loop
            return reply(503, f"too many requests from {client} (shim.rate "
                              f"{self.config.rate:g}/s, shim.burst {self.config.burst}); "
                              "slow down")
        if wait > 0:
            await asyncio.sleep(wait)
        return None

    async def _answer(self, got: tuple[h11.Request, bytes, bool, bool], client: str,
                      local: str) -> Response:
        request, body, too_big, _ = got
        target = request.target
        query_b = target.partition(b"?")[2]
        path = _path(target)
        route = self.routes.find(path)
        pool = self.pools.get(route.pool if route else "main") or self.pools["main"]
        headers: dict[str, str] = {}
        for name, value in request.headers:
            key = name.decode("latin-1").lower()
            text = value.decode("latin-1")
            headers[key] = f"{headers[key]}, {text}" if key in headers else text
        method = request.method.decode("ascii", "replace").upper()
        query = ascii_query(query_b)
        self._busy += 1
        try:
            fut = pool.submit(lambda: self.app.handle(method, path, query, headers, body,
                                                      client, too_big, local)[0])
            return await asyncio.wrap_future(fut)
        except Busy:
            HTTP_REQUESTS.labels(route.path if route else "other", "busy").inc()
            self.refusals.add(f"busy_{pool.name}", client)
            return busy(pool)
        finally:
            self._busy -= 1

    async def _send(self, conn: h11.Connection, writer: asyncio.StreamWriter,
                    request: h11.Request, resp: Response, close: bool = False) -> bool:
        """Write the answer; True when the connection stays open for another request."""
        closing = close or (self._stopping is not None and self._stopping.is_set())
        headers = [("Content-Type", resp.content_type), ("Content-Length", str(len(resp.body))),
                   ("Cache-Control", "no-store"), ("Server", "dicomgate")]
        if resp.request_id:
            headers.append(("X-Request-Id", resp.request_id))
        headers.extend(resp.headers)  # a mounted app's own (the console's CSP, Location)
        if closing:
            headers.append(("Connection", "close"))
        out = conn.send(h11.Response(status_code=resp.status, headers=headers,
                                     reason=(phrase(resp.status) or "OK").encode()))
        if request.method != b"HEAD":
            out += conn.send(h11.Data(data=resp.body))
        out += conn.send(h11.EndOfMessage())
        writer.write(out)
        try:
            async with asyncio.timeout(SEND_TIMEOUT):
                await writer.drain()
        except TimeoutError:
            return False
        return not closing and conn.our_state is h11.DONE and conn.their_state is h11.DONE


async def _linger(reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                  seconds: float) -> None:
    """Flush the answer, then read and discard what the caller still sends until it closes,
    for LINGER at most; a caller still there after that is held silently (reading paused:
    its trickle no longer wakes the server) until `seconds`, then dropped."""
    try:
        async with asyncio.timeout(min(seconds, LINGER)):
            await writer.drain()
            while await reader.read(READ_SIZE):
                pass
    except TimeoutError:
        if seconds > LINGER:
            writer.transport.pause_reading()
            await asyncio.sleep(seconds - LINGER)
    except (ConnectionError, OSError):
        pass
    finally:
        writer.transport.abort()


def _write_eof(writer: asyncio.StreamWriter) -> None:
    try:
        if writer.can_write_eof():
            writer.write_eof()
    except (OSError, RuntimeError):
        pass


def _path(target: bytes) -> str:
    return unquote(target.partition(b"?")[0].decode("latin-1"), errors="replace")


def _raise_fd_limit(connections: int) -> None:
    """Each connection is a file descriptor: lift the soft limit towards the hard one."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = connections + MAX_REFUSING + 256
    if soft != resource.RLIM_INFINITY and soft < want:
        new = want if hard == resource.RLIM_INFINITY else min(want, hard)
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (new, hard))
        except (ValueError, OSError):
            new = soft
        if new < want:
            log.warning("shim.fd_limit_low", limit=new, max_connections=connections,
                        hint="raise LimitNOFILE in the systemd unit or lower "
                             "shim.max_connections")
