"""WebSocket framing (shell/websocket.py) and the replicas' client connection (shell/ws_client.py):
frames however the network cuts them, fragments, control frames, the message size bound, masked
frames as a server's parser reads them, the connection against trio-websocket servers on 127.0.0.1, and
the sync server's side: its handshake and its reading of clients' frames."""

from __future__ import annotations

import itertools
import json
import random

import pytest
import trio
import trio_websocket
from wsproto.frame_protocol import FrameProtocol, Opcode

from datsync.shell.websocket import (
    OP_BINARY,
    OP_CLOSE,
    OP_CONTINUATION,
    OP_PING,
    OP_PONG,
    OP_TEXT,
    CloseReceived,
    FrameReader,
    Ping,
    Pong,
    Violation,
    close_frame,
    frame,
    handshake_accept,
    mask,
)
from datsync.shell.ws_client import WebSocketClosed, WebSocketHandshakeError, WebSocketRejected, open_websocket
from tests.sync_server import HELLO, msg, raw_http, wait_until

KEY = b"\x01\x80\xfe\x7f"


def fragment(opcode: int, pieces: list[bytes], key: bytes | None = None) -> bytes:
    """A message sent as several frames: the first with ``opcode``, then continuations, the last final
    (masked with ``key``, as a client sends them, when given)."""
    out = b""
    for i, piece in enumerate(pieces):
        head = frame(opcode if i == 0 else OP_CONTINUATION, piece, key)
        if i < len(pieces) - 1:
            head = bytes((head[0] & 0x7F,)) + head[1:]  # not final
        out += head
    return out


def read_in_pieces(data: bytes, cuts: list[int], max_size: int = 1 << 20) -> list:
    reader = FrameReader(max_size)
    events: list = []
    for a, b in itertools.pairwise([0, *cuts, len(data)]):
        events += reader.feed(data[a:b])
    return events


def test_server_frames_of_every_length_form_read_back():
    payloads = [b"", b"x", bytes(range(125)), b"a" * 126, b"b" * 65535, b"c" * 65536, b"d" * 70000]
    stream = b"".join(frame(OP_BINARY, p) for p in payloads)
    assert FrameReader(1 << 20).feed(stream) == payloads
    assert frame(OP_BINARY, b"a" * 126)[1] == 126 and frame(OP_BINARY, b"c" * 65536)[1] == 127


def test_frames_split_anywhere_across_reads_give_the_same_events():
    stream = (frame(OP_BINARY, b"first") + frame(OP_PING, b"are you there") + frame(OP_TEXT, "h\u00e9llo".encode())
              + fragment(OP_BINARY, [b"one ", b"two ", b"three"]) + frame(OP_BINARY, b"z" * 300))
    expected = [b"first", Ping(b"are you there"), "h\u00e9llo", b"one two three", b"z" * 300]
    assert read_in_pieces(stream, []) == expected
    for cut in range(1, len(stream)):
        assert read_in_pieces(stream, [cut]) == expected, cut
    assert read_in_pieces(stream, list(range(1, len(stream)))) == expected  # one byte at a time
    rng = random.Random(7)
    for _ in range(200):
        cuts = sorted(rng.sample(range(1, len(stream)), rng.randint(1, 12)))
        assert read_in_pieces(stream, cuts) == expected, cuts


def test_a_fragmented_message_may_have_control_frames_between_its_fragments():
    first, rest = fragment(OP_TEXT, [b"ab", b"cd"]), fragment(OP_TEXT, [b"ef"])
    cut = len(frame(OP_CONTINUATION, b"ab"))
    stream = first[:cut] + frame(OP_PING, b"p") + frame(OP_PONG, b"q") + first[cut:] + rest
    assert FrameReader(100).feed(stream) == [Ping(b"p"), Pong(b"q"), "abcd", "ef"]


def test_close_frames_carry_code_and_reason_and_end_reading():
    reader = FrameReader(100)
    events = reader.feed(close_frame(4000, "going away now") + frame(OP_BINARY, b"after the close"))
    assert events == [CloseReceived(4000, "going away now")] and reader.done
    assert reader.feed(frame(OP_BINARY, b"more")) == []
    assert FrameReader(100).feed(frame(OP_CLOSE, b"")) == [CloseReceived(1005, "")]
    long = close_frame(1001, "\u00e9" * 100)  # cut to 123 bytes of UTF-8, on a character boundary
    (closed,) = FrameReader(200).feed(long)
    assert closed.code == 1001 and len(closed.reason.encode()) <= 123 and closed.reason.endswith("...")


@pytest.mark.parametrize(("data", "code"), [
    (bytes((0x82 | 0x40, 1)) + b"x", 1002),                         # a reserved bit: no extension was agreed
    (bytes((0x83, 1)) + b"x", 1002),                                # an unknown opcode
    (frame(OP_BINARY, b"x", KEY), 1002),                             # a server's frame must not be masked
    (frame(OP_CONTINUATION, b"x"), 1002),                            # a continuation of nothing
    (fragment(OP_BINARY, [b"a", b"b"])[:3] + frame(OP_BINARY, b"c"), 1002),  # a message inside a message
    (bytes((0x09, 1)) + b"x", 1002),                                # a control frame that is not final
    (frame(OP_PING, b"p" * 126), 1002),                              # a control frame too long
    (frame(OP_CLOSE, b"\x03"), 1002),                                # a close frame with half a code
    (frame(OP_CLOSE, (1006).to_bytes(2, "big")), 1002),              # a code no peer may send
    (frame(OP_TEXT, b"\xff\xfe"), 1007),                             # text that is not UTF-8
])
def test_frames_that_break_the_rules_are_violations_with_the_close_code_to_send(data, code):
    reader = FrameReader(1000)
    events = reader.feed(data)
    assert isinstance(events[-1], Violation) and events[-1].code == code and reader.done


def test_a_message_above_the_bound_is_refused_from_its_header_before_its_payload():
    reader = FrameReader(1000)
    header = frame(OP_BINARY, b"x" * 5000)[:4]  # the payload never arrives
    (v,) = reader.feed(header)
    assert v == Violation(1009, "Exceeded maximum message size: 1000 bytes")
    # fragments count together
    (v,) = FrameReader(1000).feed(fragment(OP_BINARY, [b"a" * 600, b"b" * 600]))
    assert v.code == 1009
    assert FrameReader(1000).feed(fragment(OP_BINARY, [b"a" * 500, b"b" * 500])) == [b"a" * 500 + b"b" * 500]


def test_masked_frames_read_back_with_the_servers_parser():
    """What a replica sends (masked with a random key) is what wsproto, behind trio-websocket on the
    server, reads; and our reader of clients' frames agrees."""
    rng = random.Random(3)
    payloads = [b"", b'{"type":"ack","t":7}', bytes(rng.randrange(256) for _ in range(300)), b"m" * 70000]
    keys = [rng.randbytes(4) for _ in payloads]
    stream = b"".join(frame(OP_BINARY, p, k) for p, k in zip(payloads, keys)) + close_frame(1000, "bye", KEY)
    server = FrameProtocol(client=False, extensions=[])
    server.receive_bytes(stream)
    frames = list(server.received_frames())
    assert [(f.opcode, bytes(f.payload)) for f in frames[:-1]] == [(Opcode.BINARY, p) for p in payloads]
    assert frames[-1].opcode is Opcode.CLOSE and tuple(frames[-1].payload) == (1000, "bye")
    ours = FrameReader(1 << 20, masked=True).feed(stream)
    assert ours == [*payloads, CloseReceived(1000, "bye")]
    assert FrameReader(1 << 20, masked=True).feed(frame(OP_BINARY, b"x"))[0].code == 1002  # unmasked: refused
    assert mask(mask(b"hello world", KEY), KEY) == b"hello world" and mask(b"", KEY) == b""


def test_the_accept_key_is_rfc_6455s_example():
    assert handshake_accept("dGhlIHNhbXBsZSBub25jZQ==") == "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="


# -- the client connection against trio-websocket servers -----------------------------------------


async def serving(nursery: trio.Nursery, handler) -> str:
    async def accept(request: trio_websocket.WebSocketRequest) -> None:
        await handler(await request.accept())

    listener = await nursery.start(trio_websocket.serve_websocket, accept, "127.0.0.1", 0, None)
    return f"ws://127.0.0.1:{listener.port}/path?x=1"


def test_messages_both_ways_pings_answered_and_the_servers_close_surfaces():
    seen: dict = {}

    async def handler(ws: trio_websocket.WebSocketConnection) -> None:
        seen["path"] = ws.path
        seen["got"] = [await ws.get_message(), await ws.get_message()]
        await ws.send_message(b"binary")
        await ws.send_message("text")
        await ws.ping(b"ping?")  # returns once our pong arrived
        await ws.aclose(4001, "done here")

    async def main() -> None:
        async with trio.open_nursery() as nursery:
            url = await serving(nursery, handler)
            ws = await open_websocket(url, max_message_size=1000)
            nursery.start_soon(ws.write_queued)
            ws.send_soon(b"one")
            ws.send_soon(b"two")
            got: list = []
            with pytest.raises(WebSocketClosed) as e, trio.fail_after(10):
                while True:
                    got += await ws.receive()
            assert got == [b"binary", "text"]
            assert (e.value.code, e.value.reason, e.value.why) == (4001, "done here", "4001 done here")
            await ws.aclose()
            nursery.cancel_scope.cancel()
        assert seen == {"path": "/path?x=1", "got": [b"one", b"two"]}

    trio.run(main)


def test_a_message_above_the_bound_closes_with_1009_and_our_close_reaches_the_server():
    closes: list = []

    async def handler(ws: trio_websocket.WebSocketConnection) -> None:
        try:
            await ws.send_message(b"x" * 5000)
            await ws.get_message()
        except trio_websocket.ConnectionClosed as e:
            closes.append(e.reason.code)

    async def main() -> None:
        async with trio.open_nursery() as nursery:
            url = await serving(nursery, handler)
            ws = await open_websocket(url, max_message_size=1000)
            with pytest.raises(WebSocketClosed) as e, trio.fail_after(10):
                while True:
                    await ws.receive()
            assert e.value.code == 1009 and "maximum message size" in e.value.why
            with trio.fail_after(10):
                while not closes:
                    await trio.sleep(0.01)
            await ws.aclose()
            nursery.cancel_scope.cancel()
        assert closes == [1009]

    trio.run(main)


def test_a_refused_handshake_gives_the_status_and_body_and_a_non_websocket_answer_fails():
    async def answer(stream: trio.SocketStream, head: bytes) -> None:
        await stream.receive_some(65536)
        await stream.send_all(head)
        await stream.aclose()

    async def main() -> None:
        async with trio.open_nursery() as nursery:
            for head, error in [
                (b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 11\r\n\r\nat capacity", WebSocketRejected),
                (b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                 b"Sec-WebSocket-Accept: wrong\r\n\r\n", WebSocketHandshakeError),
                (b"SSH-2.0-OpenSSH_9.6\r\n", WebSocketHandshakeError),
            ]:
                listeners = await nursery.start(trio.serve_tcp, lambda s, head=head: answer(s, head), 0)
                port = listeners[0].socket.getsockname()[1]
                with pytest.raises(error) as e, trio.fail_after(10):
                    await open_websocket(f"ws://127.0.0.1:{port}/", max_message_size=100)
                if error is WebSocketRejected:
                    assert e.value.status_code == 503 and e.value.body == b"at capacity"
            nursery.cancel_scope.cancel()

    trio.run(main)


def test_queued_messages_go_out_masked_in_one_write_and_an_ack_replaces_the_one_queued_just_before():
    from trio.testing import memory_stream_pair

    from datsync.shell.ws_client import ClientWebSocket

    async def main() -> None:
        ours, theirs = memory_stream_pair()
        keys = iter(range(1, 1000))
        ws = ClientWebSocket(ours, FrameReader(100), b"", lambda n: bytes([next(keys)]) * n)
        ws.send_soon(b"ack 1", kind="ack")
        ws.send_soon(b"ack 2", kind="ack")  # replaces ack 1: not written yet
        ws.send_soon(b"submit")
        ws.send_soon(b"ack 3", kind="ack")  # not right after an ack: kept
        ws.close_soon(1000, "bye")
        ws.send_soon(b"after the close")    # dropped
        with trio.fail_after(10):
            await ws.write_queued()         # returns once the close frame is written
            data = await theirs.receive_some()
        server = FrameReader(100, masked=True)
        assert server.feed(data) == [b"ack 2", b"submit", b"ack 3", CloseReceived(1000, "bye")]
        assert data[2:6] == b"\x02" * 4 and data[13:17] == b"\x03" * 4  # a key of its own per frame

    trio.run(main)


def test_a_replica_refused_by_the_handshake_gives_up_with_the_status_and_body():
    from datsync.shell import ReplicaConnectionError, open_replica

    async def refuse(stream: trio.SocketStream) -> None:
        await stream.receive_some(65536)
        await stream.send_all(b"HTTP/1.1 403 Forbidden\r\nContent-Length: 15\r\n\r\nnot for you\r\n\r\n")
        await stream.aclose()

    async def main() -> None:
        async with trio.open_nursery() as nursery:
            listeners = await nursery.start(trio.serve_tcp, refuse, 0)
            url = f"ws://127.0.0.1:{listeners[0].socket.getsockname()[1]}/"
            with pytest.raises(ReplicaConnectionError) as e, trio.fail_after(20):
                async with open_replica(url, backoff=(0.01, 0.05)):
                    pass
            assert e.value.code == "sync/rejected"
            assert str(e.value) == f"{url} refused the WebSocket handshake: HTTP 403: not for you"
            nursery.cancel_scope.cancel()

    trio.run(main)


# -- the sync server's side: its handshake and its reading of clients' frames ----------------------


async def server_frames(ws, reader: FrameReader, until) -> list:
    """The server's frames on ``ws``'s stream read with ``reader``, pongs and closes included, until
    ``until(events)`` or the end of the stream."""
    events: list = []
    with trio.fail_after(10):
        while not until(events):
            data = await ws.stream.receive_some(65536)
            if not data:
                break
            events += reader.feed(data)
    return events


def has(kind: str):
    """Whether events hold the protocol message of type ``kind``."""
    return lambda events: any(type(e) is bytes and json.loads(e)["type"] == kind for e in events)


def test_the_server_reads_fragments_answers_pings_and_echoes_the_clients_close(servers):
    server = servers.start("db.sqlite")

    async def main() -> None:
        ws = await open_websocket(server.url, max_message_size=1 << 20)
        hello = HELLO.encode()
        pieces = fragment(OP_TEXT, [hello[:5], hello[5:9], hello[9:]], KEY)
        cut = len(frame(OP_TEXT, hello[:5], KEY))  # a ping between the fragments, answered at once
        await ws.stream.send_all(pieces[:cut] + frame(OP_PING, b"are you there", KEY) + pieces[cut:])
        reader = FrameReader(1 << 22)
        events = await server_frames(ws, reader, has("welcome"))
        assert events[0] == Pong(b"are you there") and has("welcome")(events)
        await ws.stream.send_all(frame(OP_BINARY, msg("ping", n=7).encode(), KEY))  # the protocol's own ping
        events = await server_frames(ws, reader, has("pong"))
        assert {"v": 2, "type": "pong", "n": 7} in [json.loads(e) for e in events]
        await ws.stream.send_all(close_frame(4000, "done here", KEY))
        events = await server_frames(ws, reader, lambda es: False)  # until the server closes the connection
        assert events[-1] == CloseReceived(4000, "")
        await ws.aclose()

    trio.run(main)
    assert wait_until(lambda: server.health()["sessions_closed"].get("peer")) == 1
    assert "peer closed: 4000 done here" in server.log_text()


@pytest.mark.parametrize(("data", "code", "reason", "closed_as"), [
    (frame(OP_BINARY, b'{"v":2,"type":"ping"}'), 1002, "a client's frames must be masked", "protocol/malformed"),
    (frame(OP_BINARY, b"x" * 3000, KEY)[:8], 1009, "Exceeded maximum message size: 2000 bytes", "protocol/too-large"),
    (frame(OP_TEXT, b"\xff\xfe", KEY), 1007, "a text message that is not UTF-8", "protocol/malformed"),
])
def test_the_server_closes_on_frames_that_break_the_rules_saying_why(servers, data, code, reason, closed_as):
    server = servers.start("db.sqlite", "--max-message-size", "1000")  # WebSocket messages up to 2000 bytes

    async def main() -> None:
        ws = await open_websocket(server.url, max_message_size=1 << 20)
        await ws.stream.send_all(frame(OP_TEXT, HELLO.encode(), KEY))
        reader = FrameReader(1 << 22)
        assert has("welcome")(await server_frames(ws, reader, has("welcome")))
        await ws.stream.send_all(data)  # the oversize one: its header alone, the payload never comes
        events = await server_frames(ws, reader, lambda es: False)
        assert events and events[-1] == CloseReceived(code, reason), (events, server.log_text()[-3000:])
        await ws.aclose()

    trio.run(main)
    assert wait_until(lambda: server.health()["sessions_closed"].get(closed_as)) == 1
    assert server.alive()


def test_the_server_refuses_handshakes_it_cannot_answer_saying_why(servers):
    server = servers.start("db.sqlite")
    upgrade = (b"GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: keep-alive, Upgrade\r\n"
               b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n")
    ok = raw_http(server.port, upgrade + b"Sec-WebSocket-Version: 13\r\n\r\n" + close_frame(1000, "", KEY))
    assert ok.startswith(b"HTTP/1.1 101 Switching Protocols\r\n")
    assert b"Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n" in ok  # RFC 6455's example
    assert ok.endswith(close_frame(1000))  # its close, sent with the head, answered
    version = raw_http(server.port, upgrade + b"Sec-WebSocket-Version: 8\r\n\r\n")
    assert version.startswith(b"HTTP/1.1 426 ") and b"Sec-WebSocket-Version: 13\r\n" in version
    for request, why in [
        (upgrade + b"\r\n", b"WebSocket version 13 only"),
        (upgrade.replace(b"GET", b"POST") + b"Sec-WebSocket-Version: 13\r\n\r\n", b"a GET request"),
        (upgrade.replace(b"dGhlIHNhbXBsZSBub25jZQ==", b"short") + b"Sec-WebSocket-Version: 13\r\n\r\n",
         b"16 bytes in base64"),
        (upgrade.replace(b"keep-alive, Upgrade", b"keep-alive") + b"Sec-WebSocket-Version: 13\r\n\r\n",
         b"Connection: Upgrade"),
        (upgrade + b"Sec-WebSocket-Version: 13\r\nContent-Length: 3\r\n\r\nabc", b"has no body"),
    ]:
        answer = raw_http(server.port, request)
        assert answer.startswith(b"HTTP/1.1 400 ") and why in answer, (request, answer)
    assert server.health()["sessions"] == 0 and server.alive()

