#!/usr/bin/env python3
"""File download check for the official Python client (`openiap` 0.0.37, pure Python).

Usage: file_check.py URL OUTDIR ID=EXPECTED_PATH [ID=EXPECTED_PATH ...]

URL is `ws://USER:PASSWORD@HOST:PORT/ws/v2` or `grpc://USER:PASSWORD@HOST:PORT`. The
client has no upload; the test uploads the files first and passes their ids and a copy
of their content. Signs in, downloads each file by id into OUTDIR (the client names it
after the server's `filename`), and compares the bytes. Exit status 0 on
success, 1 (with a FAIL line) on any failure; bounded by WATCH_CHECK_TIMEOUT seconds.
"""

import asyncio
import os
import sys
import threading
import time

os.environ.setdefault("enable_analytics", "false")

HARD_TIMEOUT = float(os.environ.get("WATCH_CHECK_TIMEOUT", "30"))
CALL_TIMEOUT = 20.0


def log(message):
    print(f"[file_check.py] {message}", flush=True)


def fail(message):
    print(f"[file_check.py] FAIL: {message}", flush=True)
    sys.stderr.flush()
    os._exit(1)


async def main(url, outdir, files):
    from openiap import Client

    client = Client(url)
    try:
        user = await asyncio.wait_for(client.Signin(), CALL_TIMEOUT)
    except Exception as error:  # noqa: BLE001
        fail(f"Signin: {error!r}")
    log(f"signed in as {user.username}")
    for spec in files:
        file_id, expected_path = spec.split("=", 1)
        with open(expected_path, "rb") as handle:
            expected = handle.read()
        try:
            result = await asyncio.wait_for(
                client.DownloadFile(Id=file_id, OutPath=outdir), CALL_TIMEOUT
            )
        except Exception as error:  # noqa: BLE001
            fail(f"DownloadFile {file_id}: {error!r}")
        path = os.path.join(outdir, result.filename)
        with open(path, "rb") as handle:
            content = handle.read()
        if content != expected:
            fail(f"{file_id}: {len(content)} bytes differ from the expected {len(expected)}")
        log(f"downloaded {file_id} ({len(content)} bytes) as {result.filename}")
    client.Close()
    log("OK")


def run():
    if len(sys.argv) < 4:
        print(__doc__, file=sys.stderr)
        os._exit(2)
    timer = threading.Timer(HARD_TIMEOUT, fail, args=(f"overall timeout of {HARD_TIMEOUT} s",))
    timer.daemon = True
    timer.start()
    started = time.monotonic()
    try:
        asyncio.run(main(sys.argv[1], sys.argv[2], sys.argv[3:]))
    except SystemExit:
        raise
    except BaseException as error:  # noqa: BLE001
        fail(f"unexpected {error!r}")
    log(f"passed in {time.monotonic() - started:.1f} s")
    sys.stdout.flush()
    os._exit(0)


if __name__ == "__main__":
    run()
