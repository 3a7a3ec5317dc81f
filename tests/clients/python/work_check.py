#!/usr/bin/env python3
"""Work item and file check for the official Python client (`openiap` 0.0.37).

Usage: work_check.py URL   (ws://USER:PASSWORD@HOST:PORT/ws/v2 or grpc://USER:PASSWORD@HOST:PORT;
without credentials in the URL, OPENIAP_USERNAME / OPENIAP_PASSWORD are used)

* addworkitemqueue (the client has no API for it: sent through its envelope plumbing,
  the reply read from a tap on protowrap.parse_message);
* PushWorkitem with a file, gzip-compressed as the client does (compressed=True), and one
  uncompressed; PopWorkitem(includefiles=True) returns both files' bytes, the payload and
  state `processing`; DownloadFile by the popped file's `_id` returns the same bytes;
* UpdateWorkitem `retry` → `new` with retries 1; again → `failed` (maxretries 2);
  another item → `successful`; an empty queue pops nothing;
* deleteworkitemqueue with purge.
Names use WORK_CHECK_ID (default: random). Exit status 0 on success, 1 (with a FAIL
line) on failure; bounded by WORK_CHECK_TIMEOUT seconds (default 60).
"""

import asyncio
import json
import os
import random
import sys
import tempfile
import threading
from urllib.parse import quote, urlparse, urlunparse

os.environ.setdefault("enable_analytics", "false")

HARD_TIMEOUT = float(os.environ.get("WORK_CHECK_TIMEOUT", "60"))
CALL_TIMEOUT = 20.0
TAG = "[work_check.py]"
RAW_REPLIES = {}


def log(message):
    print(f"{TAG} {message}", flush=True)


def fail(message):
    print(f"{TAG} FAIL: {message}", flush=True)
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


async def within(what, awaitable, timeout=CALL_TIMEOUT):
    try:
        return await asyncio.wait_for(awaitable, timeout)
    except asyncio.TimeoutError:
        fail(f"{what}: no reply within {timeout} s")
    except Exception as error:  # the client raises ValueError("SERVER ERROR ...")
        fail(f"{what}: {error!r}")


def expect_equal(what, actual, expected):
    if actual != expected:
        fail(f"{what}: got {actual!r}, expected {expected!r}")


def install_tap():
    from openiap.protowrap import protowrap

    original = protowrap.parse_message

    def tapped(client, message):
        if message.command in ("addworkitemqueuereply", "deleteworkitemqueuereply"):
            RAW_REPLIES[message.rid] = message
        return original(client, message)

    protowrap.parse_message = tapped


async def raw(client, what, command, message, reply_command):
    from openiap.protowrap import protowrap
    from proto import base_pb2

    request = base_pb2.Envelope(command=command)
    request.data.Pack(message)
    await within(what, protowrap.RPC(client, request))
    reply = RAW_REPLIES.pop(request.id, None)
    if reply is None or reply.command != reply_command:
        fail(f"{what}: expected a {reply_command} reply, got {reply!r}")
    return reply


async def main(url):
    from openiap import Client
    from proto import workitems_pb2

    install_tap()
    check_id = os.environ.get("WORK_CHECK_ID") or "%08x" % random.getrandbits(32)
    transport = "grpc" if url.startswith("grpc") else "ws"
    wiq = f"wcp{check_id}_{transport}"
    client = Client(url)
    user = await within("Signin", client.Signin())
    log(f"signed in as {user.username}, queue {wiq}")

    request = workitems_pb2.AddWorkItemQueueRequest(
        workitemqueue=workitems_pb2.WorkItemQueue(name=wiq, maxretries=2, retrydelay=0, initialdelay=0)
    )
    reply = await raw(client, "addworkitemqueue", "addworkitemqueue", request, "addworkitemqueuereply")
    added = workitems_pb2.AddWorkItemQueueResponse()
    reply.data.Unpack(added)
    expect_equal("added queue name", added.workitemqueue.name, wiq)
    wiqid = added.workitemqueue._id
    if not wiqid:
        fail("addworkitemqueue returned no _id")

    empty = await within("PopWorkitem (empty)", client.PopWorkitem(wiq))
    if empty is not None and empty.ListFields():
        fail(f"pop of an empty queue returned {empty}")

    folder = tempfile.mkdtemp(prefix="work_check_")
    packed = os.urandom(200 * 1024)
    plain = os.urandom(1000)
    packed_path = os.path.join(folder, "packed.bin")
    plain_path = os.path.join(folder, "plain.txt")
    with open(packed_path, "wb") as out:
        out.write(packed)
    with open(plain_path, "wb") as out:
        out.write(plain)

    pushed = await within(
        "PushWorkitem compressed",
        client.PushWorkitem(wiq, "first", {"n": 1}, files=[packed_path], compressed=True),
    )
    expect_equal("pushed state", pushed.state, "new")
    expect_equal("pushed wiqid", pushed.wiqid, wiqid)
    await within("PushWorkitem plain", client.PushWorkitem(wiq, "second", {"n": 2}, files=[plain_path]))

    popped = await within("PopWorkitem", client.PopWorkitem(wiq, includefiles=True))
    expect_equal("first pop", popped._id, pushed._id)
    expect_equal("popped state", popped.state, "processing")
    expect_equal("popped payload", json.loads(popped.payload), {"n": 1})
    if len(popped.files) != 1:
        fail(f"popped item has {len(popped.files)} files")
    expect_equal("file name", popped.files[0].filename, "packed.bin")
    if popped.files[0].file != packed:
        fail(f"popped file bytes differ ({len(popped.files[0].file)} bytes, compressed={popped.files[0].compressed})")
    file_id = popped.files[0]._id
    download_dir = os.path.join(folder, "down")
    os.makedirs(download_dir)
    result = await within("DownloadFile", client.DownloadFile(Id=file_id, OutPath=download_dir))
    with open(os.path.join(download_dir, result.filename), "rb") as back:
        if back.read() != packed:
            fail("downloaded file differs from the pushed one")
    log(f"popped {popped._id}; its file {file_id} downloads intact")

    popped.state = "retry"
    retried = await within("UpdateWorkitem retry", client.UpdateWorkitem(popped))
    expect_equal("state after the first retry", retried.state, "new")
    expect_equal("retries", retried.retries, 1)

    second = await within("PopWorkitem 2", client.PopWorkitem(wiq, includefiles=True))
    # The retried item is back, but behind the second one (FIFO by readiness).
    expect_equal("second pop", json.loads(second.payload), {"n": 2})
    if not second.files or second.files[0].file != plain:
        fail("the uncompressed file did not come back intact")
    second.state = "successful"
    done = await within("UpdateWorkitem successful", client.UpdateWorkitem(second))
    expect_equal("state", done.state, "successful")

    again = await within("PopWorkitem 3", client.PopWorkitem(wiq))
    expect_equal("third pop", again._id, pushed._id)
    again.state = "retry"
    failed = await within("UpdateWorkitem retry 2", client.UpdateWorkitem(again))
    expect_equal("state after the last retry", failed.state, "failed")

    delete = workitems_pb2.DeleteWorkItemQueueRequest(wiq=wiq, purge=True)
    await raw(client, "deleteworkitemqueue", "deleteworkitemqueue", delete, "deleteworkitemqueuereply")
    log("PASS")
    os._exit(0)


if __name__ == "__main__":
    if len(sys.argv) != 2:
        print("usage: work_check.py URL", file=sys.stderr)
        sys.exit(2)
    threading.Timer(HARD_TIMEOUT, lambda: fail(f"overall timeout of {HARD_TIMEOUT} s")).start()
    asyncio.run(main(with_credentials(sys.argv[1])))
