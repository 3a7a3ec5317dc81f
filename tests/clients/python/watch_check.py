#!/usr/bin/env python3
"""Watch check for the official Python client (`openiap` 0.0.37, pure Python).

Usage: watch_check.py URL

URL is `ws://USER:PASSWORD@HOST:PORT/ws/v2` (WebSocket; the client uses the URL
verbatim, so the path must be given) or `grpc://USER:PASSWORD@HOST:PORT` (plain h2c).
Without credentials in the URL, OPENIAP_USERNAME / OPENIAP_PASSWORD are used.

Signs in, watches collection `clientwatch_python_<ws|grpc>` (paths [""]), inserts a
document, updates it with $set, replaces it, deletes it and checks that each change
arrives as a watch event with the right operation and document. Then unwatches,
inserts again and checks that no watch event arrives within QUIET seconds.
Exit status 0 on success, 1 (with a FAIL line) on any failure; the whole run is
bounded by WATCH_CHECK_TIMEOUT seconds (default 30).
"""

import asyncio
import json
import os
import sys
import threading
import time
from urllib.parse import quote, urlparse, urlunparse

# The client may export telemetry to a public host unless told not to.
os.environ.setdefault("enable_analytics", "false")

HARD_TIMEOUT = float(os.environ.get("WATCH_CHECK_TIMEOUT", "30"))
CALL_TIMEOUT = 10.0  # one request / one expected event
QUIET = 0.7  # how long to wait for events that must not come


def log(message):
    print(f"[watch_check.py] {message}", flush=True)


def fail(message):
    # os._exit: the client's daemon threads (websocket loop, grpc stream) must not keep
    # the process alive or delay its end.
    print(f"[watch_check.py] FAIL: {message}", flush=True)
    sys.stderr.flush()
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


async def call(what, awaitable):
    try:
        return await asyncio.wait_for(awaitable, CALL_TIMEOUT)
    except asyncio.TimeoutError:
        fail(f"{what}: no reply within {CALL_TIMEOUT} s")
    except Exception as error:  # the client raises ValueError("SERVER ERROR ...") etc.
        fail(f"{what}: {error!r}")


async def main(url):
    from openiap import Client

    parsed = urlparse(url)
    transport = {"ws": "ws", "wss": "ws", "grpc": "grpc"}.get(parsed.scheme)
    if transport is None:
        fail(f"unsupported URL scheme {parsed.scheme!r} (use ws://, wss:// or grpc://)")
    if transport == "grpc" and not parsed.port:
        fail("a grpc:// URL needs an explicit port")
    collection = f"clientwatch_python_{transport}"
    safe_url = url.replace(f":{parsed.password}@", ":***@") if parsed.password else url
    log(f"client openiap, transport {transport}, url {safe_url}, collection {collection}")

    # Built inside the running loop: the client captures asyncio.get_event_loop() and
    # resolves its replies on it from its reader thread.
    client = Client(url)

    user = await call("Signin", client.Signin())
    if user is None or not user.username:
        fail(f"Signin returned no user: {user!r}")
    expected_user = urlparse(url).username
    if user.username != expected_user:
        fail(f"signed in as {user.username!r}, expected {expected_user!r}")
    log(f"signed in as {user.username}")

    events = asyncio.Queue()
    stray = []  # watch events the client could not route to a callback

    async def on_event(_client, operation, document):
        events.put_nowait((operation, document))

    async def on_message(_client, command, _id, message):
        # The client's catch-all for server pushes it does not route itself; a
        # `watchevent` lands here when its id has no callback (e.g. after UnWatch).
        if command == "watchevent":
            stray.append((message.id, message.operation, message.document))

    client.onmessage = on_message

    watch_id = await call("Watch", client.Watch(collection, [""], on_event))
    if not watch_id:
        fail(f"Watch returned no id: {watch_id!r}")
    log(f"watching {collection} as {watch_id}")

    async def expect(operation, check):
        try:
            got_operation, document = await asyncio.wait_for(events.get(), CALL_TIMEOUT)
        except asyncio.TimeoutError:
            fail(f"no {operation!r} watch event within {CALL_TIMEOUT} s")
        if not isinstance(document, dict):
            fail(f"{operation} event: document is not a JSON object: {document!r}")
        if got_operation != operation:
            fail(f"expected a {operation!r} event, got {got_operation!r}: {json.dumps(document)}")
        problem = check(document)
        if problem:
            fail(f"{operation} event: {problem}: {json.dumps(document)}")
        log(f"event {operation}: {json.dumps(document, sort_keys=True)}")

    def fields(**expected):
        def check(document):
            for key, value in expected.items():
                if document.get(key) != value:
                    return f"{key} is {document.get(key)!r}, expected {value!r}"
            return None

        return check

    inserted = await call("InsertOne", client.InsertOne({"name": "py-watch", "n": 1}, collection))
    if not isinstance(inserted, dict) or not isinstance(inserted.get("_id"), str):
        fail(f"InsertOne returned no _id: {inserted!r}")
    doc_id = inserted["_id"]
    await expect("insert", fields(_id=doc_id, name="py-watch", n=1))

    await call(
        "UpdateDocument",
        client.UpdateDocument({"_id": doc_id}, {"$set": {"n": 2}}, collection),
    )
    await expect("update", fields(_id=doc_id, name="py-watch", n=2))

    replaced = await call(
        "UpdateOne",
        client.UpdateOne({"_id": doc_id, "name": "py-watch-replaced", "n": 3}, collection),
    )
    if not isinstance(replaced, dict) or replaced.get("n") != 3:
        fail(f"UpdateOne returned {replaced!r}")
    await expect("replace", fields(_id=doc_id, name="py-watch-replaced", n=3))

    deleted = await call("DeleteOne", client.DeleteOne(doc_id, collection))
    if deleted != 1:
        fail(f"DeleteOne reported {deleted!r} deleted documents, expected 1")
    await expect("delete", fields(_id=doc_id))

    await asyncio.sleep(QUIET)
    if not events.empty() or stray:
        fail(f"unexpected extra events: {list(events._queue)!r} {stray!r}")

    await call("UnWatch", client.UnWatch(watch_id))
    log("unwatched")
    after = await call("InsertOne", client.InsertOne({"name": "py-after-unwatch"}, collection))
    if not isinstance(after, dict) or "_id" not in after:
        fail(f"InsertOne after unwatch returned {after!r}")
    await asyncio.sleep(QUIET)
    if not events.empty() or stray:
        fail(f"watch events after unwatch: {list(events._queue)!r} {stray!r}")
    log(f"no event within {QUIET} s after unwatch")
    client.Close()
    log("OK")


def run():
    if len(sys.argv) != 2:
        print(__doc__, file=sys.stderr)
        os._exit(2)
    url = with_credentials(sys.argv[1])
    timer = threading.Timer(HARD_TIMEOUT, fail, args=(f"overall timeout of {HARD_TIMEOUT} s",))
    timer.daemon = True
    timer.start()
    started = time.monotonic()
    try:
        asyncio.run(main(url))
    except SystemExit:
        raise
    except BaseException as error:  # noqa: BLE001 - any escape is a failure
        fail(f"unexpected {error!r}")
    log(f"passed in {time.monotonic() - started:.1f} s")
    sys.stdout.flush()
    os._exit(0)


if __name__ == "__main__":
    run()
