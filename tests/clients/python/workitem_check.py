#!/usr/bin/env python3
"""Work item check for the official Python client (`openiap` 0.0.37, pure Python).

Usage: workitem_check.py URL   (ws://USER:PASSWORD@HOST:PORT/ws/v2 or grpc://...)

The client has no AddWorkItemQueue/DeleteWorkItemQueue (and its bundled .proto has an
older AddWorkItemQueueRequest): those go as raw envelopes, encoded here by hand, through
its RPC plumbing (their replies are unknown to it and resolve to None). Then:
PushWorkitem with a file the client gzips (compressed=True); PopWorkitem with
includefiles and compressed (the file comes back zlib-deflated); UpdateWorkitem to
successful; an empty pop is None; a plain file popped without compression; retry until
failed (maxretries 2); DeleteWorkItemQueue with purge. Exit status 0 on success, 1
(with a FAIL line) on any failure.
"""

import asyncio
import json
import os
import sys
import tempfile
import threading
import time
import zlib

os.environ.setdefault("enable_analytics", "false")

HARD_TIMEOUT = 30.0
CALL_TIMEOUT = 10.0


def log(message):
    print(f"[workitem_check.py] {message}", flush=True)


def fail(message):
    print(f"[workitem_check.py] FAIL: {message}", flush=True)
    sys.stderr.flush()
    os._exit(1)


async def call(what, awaitable):
    try:
        return await asyncio.wait_for(awaitable, CALL_TIMEOUT)
    except asyncio.TimeoutError:
        fail(f"{what}: no reply within {CALL_TIMEOUT} s")
    except Exception as error:  # the client raises ValueError("SERVER ERROR ...") etc.
        fail(f"{what}: {error!r}")


def expect(what, condition, detail=None):
    if not condition:
        fail(f"{what}: {detail!r}")


def _varint(n):
    out = bytearray()
    while True:
        byte = n & 0x7F
        n >>= 7
        if n:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def _field(number, wire, payload):
    if wire == 0:
        return _varint(number << 3) + _varint(payload)
    return _varint((number << 3) | 2) + _varint(len(payload)) + payload


def raw_envelope(base_pb2, command, type_name, value):
    request = base_pb2.Envelope(command=command)
    request.data.type_url = f"type.googleapis.com/openiap.{type_name}"
    request.data.value = value
    return request


async def main(url):
    from openiap import Client
    from openiap.protowrap import protowrap
    from proto import base_pb2

    transport = "grpc" if url.startswith("grpc") else "ws"
    wiq = f"wiq_python_{transport}_{int(time.time() * 1000) % 100000000}"
    client = Client(url)
    await call("Signin", client.Signin())

    # AddWorkItemQueueRequest{workitemqueue: WorkItemQueue{name (15), maxretries (6)}}
    queue = _field(15, 2, wiq.encode()) + _field(6, 0, 2)
    request = raw_envelope(base_pb2, "addworkitemqueue", "AddWorkItemQueueRequest", _field(1, 2, queue))
    await call("addworkitemqueue", protowrap.RPC(client, request))
    log(f"queue {wiq} added")

    folder = tempfile.mkdtemp()
    content = b"python says hello " * 200
    path = os.path.join(folder, "data.txt")
    with open(path, "wb") as f:
        f.write(content)
    pushed = await call(
        "PushWorkitem",
        client.PushWorkitem(wiq, "python item", {"hello": "world"}, files=[path], compressed=True),
    )
    expect("pushed", pushed is not None and pushed._id and pushed.state == "new", pushed)
    expect("pushed file", len(pushed.files) == 1 and pushed.files[0]._id, pushed.files)

    popped = await call("PopWorkitem", client.PopWorkitem(wiq, includefiles=True, compressed=True))
    expect("popped the pushed item", popped is not None and popped._id == pushed._id, popped)
    expect("processing", popped.state == "processing", popped.state)
    expect("payload", json.loads(popped.payload) == {"hello": "world"}, popped.payload)
    expect("compressed file", len(popped.files) == 1 and popped.files[0].compressed, popped.files)
    expect("file content", zlib.decompress(popped.files[0].file) == content, len(popped.files[0].file))
    log("gzip in, zlib out: ok")

    popped.state = "successful"
    done = await call("UpdateWorkitem", client.UpdateWorkitem(popped))
    expect("successful", done is not None and done.state == "successful", done)

    empty = await call("PopWorkitem", client.PopWorkitem(wiq))
    expect("empty pop is None", empty is None or not empty._id, empty)

    plain = bytes(range(256)) * 10
    path2 = os.path.join(folder, "plain.bin")
    with open(path2, "wb") as f:
        f.write(plain)
    await call("PushWorkitem", client.PushWorkitem(wiq, "plain", {}, files=[path2]))
    popped = await call("PopWorkitem", client.PopWorkitem(wiq, includefiles=True))
    expect("plain file", popped.files[0].file == plain and not popped.files[0].compressed, popped.files)

    popped.state = "retry"
    retried = await call("UpdateWorkitem retry", client.UpdateWorkitem(popped))
    expect("back to new", retried.state == "new" and retried.retries == 1, retried)
    again = await call("PopWorkitem", client.PopWorkitem(wiq))
    again.state = "retry"
    failed = await call("UpdateWorkitem retry", client.UpdateWorkitem(again))
    expect("failed after maxretries", failed.state == "failed", failed)

    # DeleteWorkItemQueueRequest{wiq (1), purge (3)}
    value = _field(1, 2, wiq.encode()) + _field(3, 0, 1)
    request = raw_envelope(base_pb2, "deleteworkitemqueue", "DeleteWorkItemQueueRequest", value)
    await call("deleteworkitemqueue", protowrap.RPC(client, request))
    try:
        await asyncio.wait_for(client.PopWorkitem(wiq), CALL_TIMEOUT)
        fail("pop from a deleted queue succeeded")
    except asyncio.TimeoutError:
        fail("pop from a deleted queue: no reply")
    except Exception as error:  # noqa: BLE001
        expect("queue gone", "not found" in str(error), str(error))
    log("queue deleted with purge")


def run():
    if len(sys.argv) != 2:
        print(__doc__, file=sys.stderr)
        os._exit(2)
    timer = threading.Timer(HARD_TIMEOUT, fail, args=(f"overall timeout of {HARD_TIMEOUT} s",))
    timer.daemon = True
    timer.start()
    try:
        asyncio.run(main(sys.argv[1]))
    except SystemExit:
        raise
    except BaseException as error:  # noqa: BLE001
        fail(f"unexpected {error!r}")
    log("PASS")
    sys.stdout.flush()
    os._exit(0)


if __name__ == "__main__":
    run()
