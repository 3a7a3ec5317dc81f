#!/usr/bin/env python3
"""Queue check for the official Python client (`openiap` 0.0.37, pure Python).

Usage: queue_check.py URL

URL is `ws://USER:PASSWORD@HOST:PORT/ws/v2` (WebSocket; the client uses the URL
verbatim, so the path must be given) or `grpc://USER:PASSWORD@HOST:PORT` (plain h2c).
Without credentials in the URL, OPENIAP_USERNAME / OPENIAP_PASSWORD are used.

Two connections: A, a client in this process, and B, a client in a child process
(`queue_check.py --peer URL`, driven over its stdin; two clients of this package in
one process share its module-level gRPC connection id and break each other's streams).
Each signs in and first registers a temporary queue (the one the client's
QueueMessage(rpc=True) uses as replyto). Then:

* temporary queues: empty and `amq.*` names give unique `python.<random>` names that
  receive messages;
* named queue: A registers QCP<ID>_NAMED (answered lower-cased), B sends to it with a
  correlationId (client.QueueMessage) and without one (the generated id is returned);
  A gets the messages, with __jwt/__user unless striptoken; A and B then share the
  named queue's messages;
* RPC: A answers on qcp<ID>_rpc, B calls QueueMessage(rpc=True) twice, then a hand-made
  request with its own correlationId gets the answer on B's queue;
* timeout: an RPC to the unregistered qcp<ID>_missing gets the `timeout` answer, a second
  send there is `bad queue: ...`, a send without replyto to qcp<ID>_never is an error,
  a registration of qcp<ID>_missing makes it work; after unregisterqueue the named
  qcp<ID>_kept queue keeps a message for A's next registration;
* exchanges qcp<ID>_direct / _fanout / _topic / _headers with addqueue: routing keys,
  both consumers of a fanout, topic wildcards, an RPC through the direct exchange;
* an RPC right after A's unregisterqueue of a temporary queue gets `timeout`;
* B's temporary queue goes away with B's connection.

The client has no API for registerexchange / unregisterqueue and does not wait for the
reply of QueueMessage: those requests are sent through the client's own envelope
plumbing (protowrap.RPC) with the bundled protobuf messages, and replies it cannot
decode (registerexchangereply, unregisterqueuereply) are read from a tap on
protowrap.parse_message. Names use QUEUE_CHECK_ID (default: random).
Exit status 0 on success, 1 (with a FAIL line) on any failure; the whole run is
bounded by QUEUE_CHECK_TIMEOUT seconds (default 45).
"""

import asyncio
import json
import os
import random
import subprocess
import sys
import threading
import time
from urllib.parse import quote, urlparse, urlunparse

# The client may export telemetry to a public host unless told not to.
os.environ.setdefault("enable_analytics", "false")

HARD_TIMEOUT = float(os.environ.get("QUEUE_CHECK_TIMEOUT", "45"))
CALL_TIMEOUT = 10.0  # one request / one expected event
QUIET = 0.7  # how long to wait for events that must not come
ROLE = "peer" if len(sys.argv) > 1 and sys.argv[1] == "--peer" else "main"
TAG = "[queue_check.py]" if ROLE == "main" else "[queue_check.py peer B]"
PEER = None  # the peer process (main only)


def log(message):
    print(f"{TAG} {message}", flush=True)


def fail(message):
    # os._exit: the client's daemon threads (websocket loop, grpc stream) must not keep
    # the process alive or delay its end.
    print(f"{TAG} FAIL: {message}", flush=True)
    sys.stderr.flush()
    if PEER is not None:
        try:
            PEER.kill()
        except Exception:  # noqa: BLE001
            pass
    os._exit(1)


def with_credentials(url):
    parsed = urlparse(url)
    if parsed.username and parsed.password:
        return url
    username = os.environ.get("OPENIAP_USERNAME", "")
    password = os.environ.get("OPENIAP_PASSWORD", "")
    if not username or not password:
        fail("no credentials: put USER:PASSWORD@ in the URL or set OPENIAP_USERNAME/OPENIAP_PASSWORD")
    netloc = f"{quote(username, safe='')}:{quote(password, safe='')}@{parsed.hostname}"
    if parsed.port:
        netloc += f":{parsed.port}"
    return urlunparse(parsed._replace(netloc=netloc))


class ServerError(Exception):
    """The server answered a request with an `error` envelope."""


async def within(what, awaitable, timeout=CALL_TIMEOUT):
    try:
        return await asyncio.wait_for(awaitable, timeout)
    except asyncio.TimeoutError:
        fail(f"{what}: no reply within {timeout} s")
    except ServerError:
        raise
    except Exception as error:  # the client raises ValueError("SERVER ERROR ...") etc.
        fail(f"{what}: {error!r}")


def server_error(error):
    text = str(error)
    return text.startswith("SERVER ERROR") or isinstance(error, ServerError)


def dump(value):
    return json.dumps(value, sort_keys=True)


# ------------------------------------------------------------------------------------
# One connection, used directly (A) or through the peer process (B).

RAW_REPLIES = {}  # rid -> envelope, for the replies the client cannot decode


def install_tap():
    from openiap.protowrap import protowrap

    original = protowrap.parse_message

    def tapped(client, message):
        if message.command in ("registerexchangereply", "unregisterqueuereply"):
            RAW_REPLIES[message.rid] = message
        return original(client, message)

    protowrap.parse_message = tapped


class LocalSide:
    def __init__(self, label, url, emit=None):
        self.label = label
        self.url = url
        self.client = None
        self.reply_queue = ""
        self.answering = {}  # queue name -> answer requests carrying a replyto
        self.errors = []  # `error` replies to fire-and-forget sends
        self.stray = []  # queue events for queues without callback
        self.events = asyncio.Queue()
        self.emit = emit or self.events.put_nowait

    async def connect(self):
        from openiap import Client

        # Built inside the running loop: the client captures asyncio.get_event_loop()
        # and resolves its replies on it from its reader thread.
        self.client = Client(self.url)
        user = await within(f"{self.label}: Signin", self.client.Signin())
        expected = urlparse(self.url).username
        if user is None or user.username != expected:
            fail(f"{self.label}: signed in as {getattr(user, 'username', None)!r}, expected {expected!r}")
        self.client.onmessage = self._on_message
        # The first registered queue is the replyto of QueueMessage(rpc=True).
        self.reply_queue = await self.register("")
        return self.reply_queue

    async def _on_message(self, _client, command, _rid, message):
        if command == "error":
            self.errors.append(message.message)
        elif command == "queueevent":
            self.stray.append({"queuename": message.queuename, "data": message.data})

    async def _on_queue(self, _client, msg, payload):
        self.emit(
            {
                "queuename": msg.queuename,
                "correlationId": msg.correlationId,
                "replyto": msg.replyto,
                "routingkey": msg.routingkey,
                "exchangename": msg.exchangename,
                "data": msg.data,
                "payload": payload,
            }
        )
        if self.answering.get(msg.queuename) and msg.replyto:
            text = payload.get("text") if isinstance(payload, dict) else None
            n = payload.get("n") if isinstance(payload, dict) else None
            return {"answer": f"re: {text}", "n": n}
        return None

    async def register(self, name, answer=False):
        queue = await within(f"{self.label}: RegisterQueue({name!r})", self.client.RegisterQueue(name, self._on_queue))
        if not isinstance(queue, str) or not queue:
            fail(f"{self.label}: RegisterQueue({name!r}) returned {queue!r}")
        self.answering[queue] = answer
        return queue

    async def _raw(self, what, command, message, reply_command):
        from openiap.protowrap import protowrap
        from proto import base_pb2

        request = base_pb2.Envelope(command=command)
        request.data.Pack(message)
        try:
            await within(what, protowrap.RPC(self.client, request))
        except ServerError:
            raise
        reply = RAW_REPLIES.pop(request.id, None)
        if reply is None or reply.command != reply_command:
            fail(f"{what}: expected a {reply_command} reply, got {reply!r}")
        return reply

    async def register_exchange(self, exchangename, algorithm, routingkey="", answer=False):
        from proto import queues_pb2

        what = f"{self.label}: registerexchange {exchangename} {algorithm} {routingkey!r}"
        request = queues_pb2.RegisterExchangeRequest(
            exchangename=exchangename, algorithm=algorithm, routingkey=routingkey, addqueue=True
        )
        reply = await self._raw(what, "registerexchange", request, "registerexchangereply")
        response = queues_pb2.RegisterExchangeResponse()
        response.ParseFromString(reply.data.value)
        if not response.queuename:
            fail(f"{what}: no queue name with addqueue")
        # What the client's RegisterQueue does with its answer.
        self.client.messagequeues[response.queuename] = self._on_queue
        self.answering[response.queuename] = answer
        return response.queuename

    async def unregister(self, queuename):
        from proto import queues_pb2

        what = f"{self.label}: unregisterqueue {queuename}"
        await self._raw(what, "unregisterqueue", queues_pb2.UnRegisterQueueRequest(queuename=queuename), "unregisterqueuereply")
        # The client keeps the callback: an event after this would be seen.
        return None

    async def post(self, queuename, payload, correlationId=None, striptoken=True):
        """client.QueueMessage without rpc: fire and forget (errors land in onmessage)."""
        await within(
            f"{self.label}: QueueMessage({queuename})",
            self.client.QueueMessage(queuename, payload, correlationId=correlationId, striptoken=striptoken),
        )
        return None

    async def send(self, payload, queuename="", exchangename="", routingkey="", correlationId="", replyto="", striptoken=True):
        """A queuemessage whose reply is awaited (QueueMessageResponse or ServerError)."""
        from openiap.protowrap import protowrap
        from proto import base_pb2, queues_pb2

        request = base_pb2.Envelope(command="queuemessage")
        request.data.Pack(
            queues_pb2.QueueMessageRequest(
                queuename=queuename,
                exchangename=exchangename,
                routingkey=routingkey,
                correlationId=correlationId,
                replyto=replyto,
                data=json.dumps(payload),
                striptoken=striptoken,
            )
        )
        what = f"{self.label}: queuemessage to {queuename or exchangename} {routingkey!r}"
        try:
            reply = await asyncio.wait_for(protowrap.RPC(self.client, request), CALL_TIMEOUT)
        except asyncio.TimeoutError:
            fail(f"{what}: no reply within {CALL_TIMEOUT} s")
        except Exception as error:  # noqa: BLE001
            if server_error(error):
                raise ServerError(str(error))
            fail(f"{what}: {error!r}")
        if reply is None:
            fail(f"{what}: the client could not decode the reply")
        return {
            "queuename": reply.queuename,
            "correlationId": reply.correlationId,
            "replyto": reply.replyto,
            "exchangename": reply.exchangename,
            "routingkey": reply.routingkey,
            "data": reply.data,
        }

    async def rpc(self, queuename, payload):
        return await within(
            f"{self.label}: QueueMessage({queuename}, rpc=True)",
            self.client.QueueMessage(queuename, payload, rpc=True),
        )

    async def problems(self):
        """Errors of fire-and-forget sends and unroutable events so far (and clears them)."""
        found = {"errors": self.errors, "stray": self.stray}
        self.errors, self.stray = [], []
        return found

    async def close(self):
        self.client.Close()
        return None

    # Events (local side only; the remote side has the same two methods).
    async def next_event(self, what):
        try:
            return await asyncio.wait_for(self.events.get(), CALL_TIMEOUT)
        except asyncio.TimeoutError:
            fail(f"{self.label}: {what}: no queue event within {CALL_TIMEOUT} s")

    async def no_event(self, what):
        await asyncio.sleep(QUIET)
        if not self.events.empty():
            fail(f"{self.label}: {what}: unexpected queue events {list(self.events._queue)!r}")
        problems = await self.problems()
        if problems["errors"] or problems["stray"]:
            fail(f"{self.label}: {what}: unexpected {problems!r}")


class RemoteSide:
    """B: the same operations, run by the peer process."""

    OPS = ("connect", "register", "register_exchange", "unregister", "post", "send", "rpc", "problems", "close")

    def __init__(self, label, url):
        global PEER
        self.label = label
        self.loop = asyncio.get_running_loop()
        self.events = asyncio.Queue()
        self.pending = {}
        self.next_id = 0
        self.reply_queue = ""
        read_fd, write_fd = os.pipe()
        env = dict(os.environ, QUEUE_CHECK_FD=str(write_fd))
        self.process = subprocess.Popen(
            [sys.executable, os.path.abspath(__file__), "--peer", url],
            stdin=subprocess.PIPE,
            pass_fds=(write_fd,),
            env=env,
        )
        PEER = self.process
        os.close(write_fd)
        self.channel = os.fdopen(read_fd, "r")
        threading.Thread(target=self._reader, daemon=True).start()
        for op in self.OPS:
            setattr(self, op, self._op(op))

    def _reader(self):
        for line in self.channel:
            message = json.loads(line)
            self.loop.call_soon_threadsafe(self._dispatch, message)
        self.loop.call_soon_threadsafe(self._gone)

    def _gone(self):
        if self.pending:
            fail(f"{self.label}: the peer process ended (status {self.process.poll()}) with requests pending")

    def _dispatch(self, message):
        if "event" in message:
            self.events.put_nowait(message["event"])
            return
        future = self.pending.pop(message["re"], None)
        if future is None or future.done():
            return
        if "err" in message:
            future.set_exception(ServerError(message["err"]))
        else:
            future.set_result(message.get("ok"))

    def _op(self, op):
        async def call(*args, **kwargs):
            self.next_id += 1
            future = self.loop.create_future()
            self.pending[self.next_id] = future
            command = json.dumps({"id": self.next_id, "op": op, "args": args, "kwargs": kwargs}) + "\n"
            self.process.stdin.write(command.encode())
            self.process.stdin.flush()
            try:
                # The peer bounds each of its calls by CALL_TIMEOUT itself.
                result = await asyncio.wait_for(future, CALL_TIMEOUT + 5)
            except asyncio.TimeoutError:
                fail(f"{self.label}: {op}: the peer did not answer")
            if op == "connect":
                self.reply_queue = result
            return result

        return call

    async def next_event(self, what):
        try:
            return await asyncio.wait_for(self.events.get(), CALL_TIMEOUT)
        except asyncio.TimeoutError:
            fail(f"{self.label}: {what}: no queue event within {CALL_TIMEOUT} s")

    async def no_event(self, what):
        await asyncio.sleep(QUIET)
        if not self.events.empty():
            fail(f"{self.label}: {what}: unexpected queue events {list(self.events._queue)!r}")
        problems = await self.problems()
        if problems["errors"] or problems["stray"]:
            fail(f"{self.label}: {what}: unexpected {problems!r}")

    def stop(self):
        try:
            self.process.stdin.close()
            self.process.wait(5)
        except Exception:  # noqa: BLE001
            self.process.kill()


async def peer_main(url):
    channel = os.fdopen(int(os.environ["QUEUE_CHECK_FD"]), "w")
    lock = threading.Lock()

    def write(message):
        with lock:
            channel.write(json.dumps(message) + "\n")
            channel.flush()

    install_tap()
    side = LocalSide("B", url, emit=lambda event: write({"event": event}))
    loop = asyncio.get_running_loop()
    done = loop.create_future()

    async def handle(command):
        try:
            result = await getattr(side, command["op"])(*command["args"], **command["kwargs"])
            write({"re": command["id"], "ok": result})
        except ServerError as error:
            write({"re": command["id"], "err": str(error)})
        except Exception as error:  # noqa: BLE001
            fail(f"{command['op']}: {error!r}")

    def reader():
        for line in sys.stdin:
            loop.call_soon_threadsafe(lambda c=json.loads(line): asyncio.ensure_future(handle(c)))
        loop.call_soon_threadsafe(lambda: done.done() or done.set_result(None))

    threading.Thread(target=reader, daemon=True).start()
    await done  # stdin closed: the main process is done with us


# ------------------------------------------------------------------------------------
# The checks.


def expect(condition, message):
    if not condition:
        fail(message)


def check_timeout_answer(what, answer, text, n):
    expect(isinstance(answer, dict), f"{what}: the answer is not a JSON object: {answer!r}")
    expect(answer.get("command") == "timeout", f"{what}: expected the timeout answer, got {dump(answer)}")
    expect(answer.get("text") == text and answer.get("n") == n, f"{what}: not the original body: {dump(answer)}")
    expect("__jwt" not in answer and "__user" not in answer, f"{what}: the timeout answer carries the token: {dump(answer)}")


async def expect_error(what, awaitable, needle=""):
    try:
        result = await awaitable
    except ServerError as error:
        expect(needle in str(error), f"{what}: expected an error with {needle!r}, got {error}")
        log(f"{what}: error as expected: {str(error).splitlines()[0]}")
        return
    fail(f"{what}: expected an error, got {result!r}")


async def main(url):
    parsed = urlparse(url)
    transport = {"ws": "ws", "wss": "ws", "grpc": "grpc"}.get(parsed.scheme)
    if transport is None:
        fail(f"unsupported URL scheme {parsed.scheme!r} (use ws://, wss:// or grpc://)")
    if transport == "grpc" and not parsed.port:
        fail("a grpc:// URL needs an explicit port")
    run_id = os.environ.get("QUEUE_CHECK_ID") or f"{random.getrandbits(48):x}"
    prefix = f"qcp{run_id}".lower()
    safe_url = url.replace(f":{parsed.password}@", ":***@") if parsed.password else url
    log(f"client openiap, transport {transport}, url {safe_url}, names {prefix}_*")

    install_tap()
    a = LocalSide("A", url)
    b = RemoteSide("B", url)
    a_temp = await a.connect()
    b_temp = await b.connect()
    log(f"A and B signed in; their reply queues are {a_temp} and {b_temp}")

    # Temporary queues.
    a_temp2 = await a.register("")
    a_amq = await a.register("amq.whatever")
    names = [a_temp, b_temp, a_temp2, a_amq]
    for name in names:
        expect(name.startswith("python.") and len(name) > len("python.") and name == name.lower(),
               f"temporary queue names are python.<random>: {name!r}")
    expect(len(set(names)) == 4, f"temporary queue names are unique: {names}")
    for n, queue in enumerate([a_temp2, a_amq]):
        reply = await b.send({"text": "to temp", "n": n}, queuename=queue)
        expect(reply["queuename"] == queue, f"queuemessagereply: {reply}")
        event = await a.next_event("message to a temporary queue")
        expect(event["queuename"] == queue and event["payload"] == {"text": "to temp", "n": n},
               f"message to the temporary queue {queue}: {dump(event)}")
    await a.no_event("after the temporary queue messages")
    log("temporary queues: unique python.* names, messages delivered")

    # Named queue.
    named = f"{prefix}_named"
    got = await a.register(named.upper())
    expect(got == named, f"RegisterQueue({named.upper()}) returned {got!r}, expected the lower-cased {named!r}")
    await b.post(named, {"text": "hello", "n": 1}, correlationId="corr-1", striptoken=False)
    event = await a.next_event("message to the named queue")
    payload = event["payload"]
    expect(event["queuename"] == named and event["correlationId"] == "corr-1" and event["replyto"] == "",
           f"the named queue event: {dump(event)}")
    expect(payload.get("text") == "hello" and payload.get("n") == 1, f"the body: {dump(event)}")
    expect((payload.get("__user") or {}).get("username") == parsed.username and payload.get("__jwt"),
           f"__user/__jwt of the sender (striptoken false): {dump(payload)}")
    reply = await b.send({"text": "second", "n": 2}, queuename=named)
    expect(reply["queuename"] == named and reply["correlationId"], f"queuemessagereply with a generated correlationId: {reply}")
    event = await a.next_event("second message")
    expect(event["correlationId"] == reply["correlationId"], f"the generated correlationId {reply['correlationId']}: {dump(event)}")
    expect(event["payload"] == {"text": "second", "n": 2} or (
        event["payload"].get("text") == "second" and "__jwt" not in event["payload"] and "__user" not in event["payload"]),
        f"striptoken removes __jwt/__user: {dump(event)}")
    await a.no_event("after the named queue messages")
    await b.no_event("after sending")
    # A and B share the named queue.
    expect(await b.register(named) == named, "B registers the named queue")
    for n in range(6):
        await a.send({"text": "shared", "n": n}, queuename=named)
    counts = {"A": 0, "B": 0}
    seen = []
    deadline = time.monotonic() + CALL_TIMEOUT
    while len(seen) < 6 and time.monotonic() < deadline:
        for label, side in (("A", a), ("B", b)):
            while not side.events.empty():
                event = side.events.get_nowait()
                counts[label] += 1
                seen.append(event["payload"]["n"])
        await asyncio.sleep(0.05)
    expect(sorted(seen) == list(range(6)), f"each shared message once: {sorted(seen)}")
    expect(counts["A"] > 0 and counts["B"] > 0, f"two consumers share a named queue: {counts}")
    await a.no_event("after the shared messages")
    await b.no_event("after the shared messages")
    log(f"named queue {named}: correlationId, __user/__jwt, striptoken, shared by A and B {counts}")

    # RPC.
    rpc_queue = f"{prefix}_rpc"
    await a.register(rpc_queue, answer=True)
    for n, text in enumerate(["hi mom, i miss you", "and a second call"]):
        answer = await b.rpc(rpc_queue, {"text": text, "n": n})
        expect(answer == {"answer": f"re: {text}", "n": n}, f"rpc {n}: got {answer!r}")
        request = await a.next_event("rpc request")
        expect(request["replyto"] == b_temp and request["correlationId"], f"rpc request: {dump(request)}")
    await b.send({"text": "by hand", "n": 7}, queuename=rpc_queue, correlationId="rpc-corr-7", replyto=b_temp)
    request = await a.next_event("hand-made request")
    expect(request["correlationId"] == "rpc-corr-7" and request["replyto"] == b_temp, f"hand-made request: {dump(request)}")
    answer = await b.next_event("the answer")
    expect(answer["queuename"] == b_temp and answer["correlationId"] == "rpc-corr-7" and answer["replyto"] == "",
           f"the answer: {dump(answer)}")
    expect(answer["payload"] == {"answer": "re: by hand", "n": 7}, f"the answer: {dump(answer)}")
    await a.no_event("after the rpcs")
    await b.no_event("after the rpcs")
    log("rpc: two QueueMessage(rpc=True) calls and one by hand answered")

    # Timeouts.
    missing = f"{prefix}_missing"
    answer = await b.rpc(missing, {"text": "anyone there?", "n": 1})
    check_timeout_answer(f"rpc to the missing queue {missing}", answer, "anyone there?", 1)
    await expect_error(f"second send with replyto to {missing}",
                       b.send({"text": "again", "n": 2}, queuename=missing, replyto=b_temp, correlationId="again"),
                       f"bad queue: {missing}")
    never = f"{prefix}_never"
    await expect_error(f"send without replyto to the missing {never}", b.send({"text": "lost"}, queuename=never))
    await a.register(missing)
    await b.send({"text": "now you exist"}, queuename=missing)
    event = await a.next_event("after registering the missing queue")
    expect(event["queuename"] == missing and event["payload"].get("text") == "now you exist", f"{dump(event)}")
    kept = f"{prefix}_kept"
    await a.register(kept)
    await a.unregister(kept)
    await b.send({"text": "kept"}, queuename=kept)
    await a.no_event("nothing delivered after unregisterqueue")
    await a.register(kept)
    event = await a.next_event("what waited in the durable queue")
    expect(event["queuename"] == kept and event["payload"].get("text") == "kept", f"{dump(event)}")
    await a.no_event("after the timeouts")
    await b.no_event("after the timeouts")
    log("timeouts: missing queue, bad queue; unregister keeps the named queue")

    # Exchanges.
    direct = f"{prefix}_direct"
    queue = await a.register_exchange(direct, "direct", "rk1", answer=True)
    # A key nobody bound is not an error (as in AMQP); the message goes nowhere.
    await b.send({"text": "not for rk1"}, exchangename=direct, routingkey="rk2")
    reply = await b.send({"text": "for rk1", "n": 1}, exchangename=direct, routingkey="rk1", correlationId="ex-1")
    expect(reply["exchangename"] == direct, f"queuemessagereply: {reply}")
    event = await a.next_event("direct exchange message")
    expect(event["queuename"] == queue and event["exchangename"] == direct and event["routingkey"] == "rk1"
           and event["correlationId"] == "ex-1" and event["payload"].get("text") == "for rk1", f"direct: {dump(event)}")
    await a.no_event("only the rk1 message")
    await b.send({"text": "via exchange", "n": 2}, exchangename=direct, routingkey="rk1", correlationId="ex-rpc", replyto=b_temp)
    expect((await a.next_event("rpc through the exchange"))["replyto"] == b_temp, "the request carries replyto")
    answer = await b.next_event("answer through the exchange")
    expect(answer["correlationId"] == "ex-rpc" and answer["payload"] == {"answer": "re: via exchange", "n": 2},
           f"answer through the exchange: {dump(answer)}")

    fanout = f"{prefix}_fanout"
    a_fan = await a.register_exchange(fanout, "fanout")
    b_fan = await b.register_exchange(fanout, "fanout")
    expect(a_fan != b_fan, f"each fanout consumer has its own queue: {a_fan} {b_fan}")
    await a.send({"text": "to all"}, exchangename=fanout, routingkey="any.key")
    for side, queue in ((a, a_fan), (b, b_fan)):
        event = await side.next_event("fanout message")
        expect(event["queuename"] == queue and event["exchangename"] == fanout and event["payload"].get("text") == "to all",
               f"{side.label} fanout: {dump(event)}")
    await a.no_event("one fanout copy")
    await b.no_event("one fanout copy")

    topic = f"{prefix}_topic"
    a_created = await a.register_exchange(topic, "topic", "orders.*.created")
    b_all = await b.register_exchange(topic, "topic", "orders.#")
    await a.send({"text": "created"}, exchangename=topic, routingkey="orders.eu.created")
    for side, queue in ((a, a_created), (b, b_all)):
        event = await side.next_event("orders.eu.created")
        expect(event["queuename"] == queue and event["routingkey"] == "orders.eu.created", f"{side.label} topic: {dump(event)}")
    await a.send({"text": "deleted"}, exchangename=topic, routingkey="orders.eu.deleted")
    event = await b.next_event("orders.eu.deleted")
    expect(event["queuename"] == b_all and event["payload"].get("text") == "deleted", f"B topic: {dump(event)}")
    await a.send({"text": "invoice"}, exchangename=topic, routingkey="invoices.eu.created")
    await a.no_event("orders.*.created: only orders.eu.created")
    await b.no_event("orders.#: no invoices")

    headers = f"{prefix}_headers"
    a_headers = await a.register_exchange(headers, "headers")
    await b.send({"text": "by headers"}, exchangename=headers, routingkey="some.key")
    event = await a.next_event("headers exchange message")
    expect(event["queuename"] == a_headers and event["exchangename"] == headers and event["payload"].get("text") == "by headers",
           f"headers: {dump(event)}")
    await a.no_event("one headers message")
    log("exchanges: direct (+rpc), fanout to A and B, topic wildcards, headers")

    # An RPC right after unregisterqueue of a temporary queue: the queue is gone.
    gone = await a.register("")
    await a.unregister(gone)
    answer = await b.rpc(gone, {"text": "gone?", "n": 4})
    check_timeout_answer(f"rpc right after unregisterqueue of the temporary queue {gone}", answer, "gone?", 4)
    await a.no_event("after unregistering the temporary queue")
    log("an rpc to a temporary queue right after its unregisterqueue gets the timeout answer")

    # B's temporary queue goes with B's connection.
    b.stop()
    deadline = time.monotonic() + CALL_TIMEOUT
    while True:
        try:
            await a.send({"text": "late"}, queuename=b_temp)
        except ServerError as error:
            log(f"B's temporary queue is gone with B: {str(error).splitlines()[0]}")
            break
        if time.monotonic() > deadline:
            fail(f"{b_temp} still takes messages {CALL_TIMEOUT} s after B's connection ended")
        await asyncio.sleep(0.2)
    await a.close()
    log("OK")


def run():
    args = sys.argv[2:] if ROLE == "peer" else sys.argv[1:]
    if len(args) != 1:
        print(__doc__, file=sys.stderr)
        os._exit(2)
    url = with_credentials(args[0])
    timer = threading.Timer(HARD_TIMEOUT, fail, args=(f"overall timeout of {HARD_TIMEOUT} s",))
    timer.daemon = True
    timer.start()
    started = time.monotonic()
    try:
        asyncio.run(main(url) if ROLE == "main" else peer_main(url))
    except SystemExit:
        raise
    except BaseException as error:  # noqa: BLE001 - any escape is a failure
        fail(f"unexpected {error!r}")
    if ROLE == "main":
        log(f"passed in {time.monotonic() - started:.1f} s")
    sys.stdout.flush()
    os._exit(0)


if __name__ == "__main__":
    run()
