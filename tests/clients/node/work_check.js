#!/usr/bin/env node
// Work item and file check for the official Node client (@openiap/nodeapi 0.0.39).
//
// Usage: node work_check.js URL
//
// URL is `ws://USER:PASSWORD@HOST:PORT/ws/v2` or `grpc://USER:PASSWORD@HOST:PORT`; without
// credentials in the URL, OPENIAP_USERNAME / OPENIAP_PASSWORD are put into it. Names use
// WORK_CHECK_ID (default: random).
//
// * AddWorkItemQueue with `amqpqueue` set; a consumer of that queue name gets a
//   `queueevent` {"wiq","wiqid"} when an item is pushed;
// * PushWorkitem with a zlib-compressed file (what the client's docs show), PopWorkitem
//   (the client's defaults: includefiles + compressed) returns the same bytes, the payload,
//   state `processing`; an empty queue pops null;
// * UpdateWorkitem `retry` brings the item back as `new` with retries 1, the second retry
//   (maxretries 2) ends `failed`; another item ends `successful`;
// * UploadFile / DownloadFile of 0-byte, 1-byte and 5 MiB files, compared byte for byte;
// * DeleteWorkitem, DeleteWorkItemQueue with purge.
// Exit status 0 on success, 1 (with a FAIL line) on any failure; bounded by
// WORK_CHECK_TIMEOUT seconds (default 60).
"use strict";

if (process.env.enable_analytics === undefined) process.env.enable_analytics = "false";
process.env.log_with_colors = "false";

const fs = require("fs");
const os = require("os");
const path = require("path");
const zlib = require("zlib");
const crypto = require("crypto");

const HARD_TIMEOUT_MS = 1000 * Number(process.env.WORK_CHECK_TIMEOUT || 60);
const CALL_TIMEOUT_MS = 20000;

function log(message) {
  console.log(`[work_check.js] ${message}`);
}

function fail(message) {
  console.log(`[work_check.js] FAIL: ${message}`);
  process.exit(1);
}

process.on("unhandledRejection", (error) => fail(`unhandled rejection: ${error && error.stack ? error.stack : error}`));
process.on("uncaughtException", (error) => fail(`uncaught exception: ${error && error.stack ? error.stack : error}`));
setTimeout(() => fail(`overall timeout of ${HARD_TIMEOUT_MS / 1000} s`), HARD_TIMEOUT_MS);

function withCredentials(raw) {
  const url = new URL(raw);
  if (url.username && url.password) return url.toString();
  const username = process.env.OPENIAP_USERNAME || "";
  const password = process.env.OPENIAP_PASSWORD || "";
  if (!username || !password) fail("no credentials: put USER:PASSWORD@ in the URL or set OPENIAP_USERNAME/OPENIAP_PASSWORD");
  url.username = encodeURIComponent(username);
  url.password = encodeURIComponent(password);
  return url.toString();
}

function within(what, promise, ms = CALL_TIMEOUT_MS) {
  let timer;
  const timeout = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Error(`no reply within ${ms / 1000} s`)), ms);
  });
  return Promise.race([promise, timeout])
    .catch((error) => fail(`${what}: ${error && error.message ? error.message : error}`))
    .finally(() => clearTimeout(timer));
}

function expectEqual(what, actual, expected) {
  if (JSON.stringify(actual) !== JSON.stringify(expected)) {
    fail(`${what}: got ${JSON.stringify(actual)}, expected ${JSON.stringify(expected)}`);
  }
}

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

async function main() {
  if (process.argv.length !== 3) {
    console.error("usage: node work_check.js URL");
    process.exit(2);
  }
  const url = withCredentials(process.argv[2]);
  const parsed = new URL(url);
  const transport = { "ws:": "ws", "wss:": "ws", "grpc:": "grpc" }[parsed.protocol];
  if (!transport) fail(`unsupported URL scheme ${parsed.protocol}`);
  const id = process.env.WORK_CHECK_ID || crypto.randomBytes(4).toString("hex");
  const wiq = `wcn${id}_${transport}`;
  const notifyQueue = `wcn${id}_${transport}_notify`;
  log(`client @openiap/nodeapi ${require("@openiap/nodeapi/package.json").version}, transport ${transport}, queue ${wiq}`);

  const { openiap } = require("@openiap/nodeapi");
  const client = new openiap(url);
  client.allowconnectgiveup = true;
  const user = await within("connect + signin", client.connect());
  log(`signed in as ${user.username}`);

  // Queue notifications arrive as queue events on the consumer's queue.
  const notices = [];
  await within("RegisterQueue", client.RegisterQueue({ queuename: notifyQueue }, (msg, payload) => {
    notices.push(typeof payload === "string" ? JSON.parse(payload) : payload);
  }));

  const queue = await within("AddWorkItemQueue", client.AddWorkItemQueue({
    workitemqueue: { name: wiq, maxretries: 2, retrydelay: 0, initialdelay: 0, amqpqueue: notifyQueue },
  }));
  if (!queue || queue.name !== wiq || !queue._id) fail(`AddWorkItemQueue returned ${JSON.stringify(queue)}`);
  log(`queue ${queue.name} ${queue._id}`);

  const empty = await within("PopWorkitem (empty)", client.PopWorkitem({ wiq }));
  if (empty !== null && empty !== undefined) fail(`pop of an empty queue returned ${JSON.stringify(empty)}`);

  // Push with a zlib-compressed file.
  const content = crypto.randomBytes(300 * 1024);
  const pushed = await within("PushWorkitem", client.PushWorkitem({
    wiq,
    name: "first",
    payload: { n: 1, text: "hello" },
    files: [{ filename: "data.bin", file: zlib.deflateSync(content), compressed: true }],
  }));
  if (!pushed || !pushed._id || pushed.state !== "new") fail(`PushWorkitem returned ${JSON.stringify(pushed)}`);
  expectEqual("pushed wiqid", pushed.wiqid, queue._id);

  const deadline = Date.now() + 5000;
  while (notices.length === 0 && Date.now() < deadline) await sleep(50);
  if (notices.length === 0) fail("no queue notification within 5 s of the push");
  expectEqual("notification wiq", notices[0].wiq, wiq);
  expectEqual("notification wiqid", notices[0].wiqid, queue._id);
  log(`notified: ${JSON.stringify(notices[0])}`);

  const popped = await within("PopWorkitem", client.PopWorkitem({ wiq }));
  if (!popped || popped._id !== pushed._id) fail(`PopWorkitem returned ${JSON.stringify(popped && popped._id)}, expected ${pushed._id}`);
  expectEqual("popped state", popped.state, "processing");
  expectEqual("popped payload", popped.payload, { n: 1, text: "hello" });
  if (!popped.files || popped.files.length !== 1) fail(`popped item has files ${JSON.stringify(popped.files)}`);
  const file = popped.files[0];
  expectEqual("file name", file.filename, "data.bin");
  let bytes = Buffer.from(file.file);
  if (file.compressed) bytes = zlib.inflateSync(bytes);
  if (!bytes.equals(content)) fail(`popped file differs: ${bytes.length} bytes, expected ${content.length}`);
  log(`popped ${popped._id} with its ${content.length}-byte file`);

  // Retry twice: back to new once, then failed (maxretries 2).
  popped.state = "retry";
  const retried = await within("UpdateWorkitem retry", client.UpdateWorkitem({ workitem: popped }));
  expectEqual("state after the first retry", retried.state, "new");
  expectEqual("retries after the first retry", retried.retries, 1);
  const again = await within("PopWorkitem again", client.PopWorkitem({ wiq, includefiles: false }));
  if (!again || again._id !== pushed._id) fail(`the retried item did not pop again: ${JSON.stringify(again)}`);
  again.state = "retry";
  const failed = await within("UpdateWorkitem retry 2", client.UpdateWorkitem({ workitem: again }));
  expectEqual("state after the last retry", failed.state, "failed");

  const second = await within("PushWorkitem 2", client.PushWorkitem({ wiq, name: "second", payload: { n: 2 } }));
  const poppedSecond = await within("PopWorkitem 2", client.PopWorkitem({ wiq }));
  expectEqual("second pop", poppedSecond && poppedSecond._id, second._id);
  poppedSecond.state = "successful";
  const done = await within("UpdateWorkitem successful", client.UpdateWorkitem({ workitem: poppedSecond }));
  expectEqual("state", done.state, "successful");
  await within("DeleteWorkitem", client.DeleteWorkitem({ _id: second._id }));

  // Files.
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "work_check_"));
  for (const size of [0, 1, 5 * 1024 * 1024]) {
    const source = path.join(dir, `upload_${size}.bin`);
    const data = crypto.randomBytes(size);
    fs.writeFileSync(source, data);
    const uploaded = await within(`UploadFile ${size}`, client.UploadFile({ filename: source, metadata: { check: id } }));
    if (!uploaded || !uploaded.id) fail(`UploadFile returned ${JSON.stringify(uploaded)}`);
    const target = path.join(dir, "down");
    fs.mkdirSync(target, { recursive: true });
    await within(`DownloadFile ${size}`, client.DownloadFile({ id: uploaded.id, folder: target, filename: `download_${size}.bin` }));
    const back = fs.readFileSync(path.join(target, `download_${size}.bin`));
    if (!back.equals(data)) fail(`download of ${size} bytes returned ${back.length} different bytes`);
    log(`uploaded and downloaded ${size} bytes as ${uploaded.id}`);
  }
  fs.rmSync(dir, { recursive: true, force: true });

  await within("DeleteWorkItemQueue", client.DeleteWorkItemQueue({ wiq, purge: true }));
  log("PASS");
  process.exit(0);
}

main().catch((error) => fail(error && error.stack ? error.stack : String(error)));
