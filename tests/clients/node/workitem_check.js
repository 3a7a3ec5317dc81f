#!/usr/bin/env node
// Work item check for the official Node client (@openiap/nodeapi 0.0.39).
//
// Usage: node workitem_check.js URL   (ws://USER:PASSWORD@HOST:PORT/ws/v2 or grpc://...)
//
// AddWorkItemQueue; PushWorkitem with a zlib-compressed file (what the client's docs show
// with pako) and an object payload; PopWorkitem with the client's defaults (includefiles
// and compressed: the file comes back zlib-deflated); UpdateWorkitem to successful;
// PushWorkitems with two priorities popped lower-first and FIFO; an empty pop; retry
// until failed; DeleteWorkitem; DeleteWorkItemQueue refused while not empty, then with
// purge. Exit status 0 on success, 1 (with a FAIL line) on any failure.
"use strict";

if (process.env.enable_analytics === undefined) process.env.enable_analytics = "false";
process.env.log_with_colors = "false";

const zlib = require("zlib");
const CALL_TIMEOUT_MS = 10000;

function log(message) {
  console.log(`[workitem_check.js] ${message}`);
}

function fail(message) {
  console.log(`[workitem_check.js] FAIL: ${message}`);
  process.exit(1);
}

process.on("unhandledRejection", (error) => fail(`unhandled rejection: ${error && error.stack ? error.stack : error}`));
process.on("uncaughtException", (error) => fail(`uncaught exception: ${error && error.stack ? error.stack : error}`));
setTimeout(() => fail("overall timeout of 45 s"), 45000);

function within(what, promise, ms = CALL_TIMEOUT_MS) {
  let timer;
  const timeout = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Error(`no reply within ${ms / 1000} s`)), ms);
  });
  return Promise.race([promise, timeout])
    .catch((error) => fail(`${what}: ${error && error.message ? error.message : error}`))
    .finally(() => clearTimeout(timer));
}

// The server's error text, or a failure when the call succeeds.
async function rejected(what, promise) {
  try {
    await promise;
  } catch (error) {
    return String(error && error.message ? error.message : error);
  }
  fail(`${what}: expected an error`);
}

function expect(what, condition, detail) {
  if (!condition) fail(`${what}${detail === undefined ? "" : `: ${JSON.stringify(detail)}`}`);
}

async function main() {
  const url = process.argv[2];
  if (!url) {
    console.error("usage: node workitem_check.js URL");
    process.exit(2);
  }
  const transport = url.startsWith("grpc") ? "grpc" : "ws";
  const wiq = `wiq_node_${transport}_${Date.now().toString(36)}`;
  const { openiap } = require("@openiap/nodeapi");
  const client = new openiap(url);
  client.allowconnectgiveup = true;
  await within("connect + signin", client.connect());

  const queue = await within("AddWorkItemQueue", client.AddWorkItemQueue({ workitemqueue: { name: wiq, maxretries: 2 } }));
  expect("queue id", queue && queue._id, queue);
  log(`queue ${wiq} added`);

  const content = Buffer.from("node says hello ".repeat(100));
  const pushed = await within(
    "PushWorkitem",
    client.PushWorkitem({
      wiq,
      name: "node item",
      payload: { hello: "world" },
      files: [{ _id: "", filename: "data.txt", compressed: true, file: zlib.deflateSync(content) }],
    })
  );
  expect("pushed id", pushed && pushed._id, pushed);
  expect("pushed state", pushed.state === "new", pushed.state);
  expect("pushed file", pushed.files && pushed.files.length === 1 && pushed.files[0]._id, pushed.files);

  const popped = await within("PopWorkitem", client.PopWorkitem({ wiq }));
  expect("popped the pushed item", popped && popped._id === pushed._id, popped);
  expect("state processing", popped.state === "processing", popped.state);
  expect("payload", popped.payload && popped.payload.hello === "world", popped.payload);
  const file = popped.files && popped.files[0];
  expect("popped file compressed", file && file.compressed && file.file && file.file.length > 0, file && file.filename);
  const inflated = zlib.inflateSync(Buffer.from(file.file));
  expect("file content", inflated.equals(content), inflated.length);
  log("pop with a zlib file: ok");

  popped.state = "successful";
  const done = await within("UpdateWorkitem", client.UpdateWorkitem({ workitem: popped }));
  expect("successful", done && done.state === "successful", done && done.state);

  const none = await within("empty PopWorkitem", client.PopWorkitem({ wiq }));
  expect("empty pop", !none, none);

  const many = await within(
    "PushWorkitems",
    client.PushWorkitems({
      wiq,
      items: [
        { name: "a", payload: { n: 1 }, priority: 2 },
        { name: "b", payload: { n: 2 }, priority: 1 },
        { name: "c", payload: { n: 3 }, priority: 2 },
      ],
    })
  );
  expect("pushed three", Array.isArray(many) && many.length === 3, many);
  const order = [];
  for (let i = 0; i < 3; i++) {
    const item = await within("PopWorkitem", client.PopWorkitem({ wiq, includefiles: false }));
    expect("an item", item, item);
    order.push(item.name);
  }
  expect("priority then FIFO", order.join() === "b,a,c", order);
  log("priority then FIFO: ok");

  const retried = await within("PushWorkitem", client.PushWorkitem({ wiq, name: "retry me", payload: {} }));
  let current = await within("PopWorkitem", client.PopWorkitem({ wiq }));
  expect("retry item", current._id === retried._id, current);
  current.state = "retry";
  current = await within("UpdateWorkitem retry", client.UpdateWorkitem({ workitem: current }));
  expect("back to new", current.state === "new" && current.retries === 1, current);
  current = await within("PopWorkitem", client.PopWorkitem({ wiq }));
  current.state = "retry";
  current = await within("UpdateWorkitem retry", client.UpdateWorkitem({ workitem: current }));
  expect("failed after maxretries", current.state === "failed", current);
  await within("DeleteWorkitem", client.DeleteWorkitem({ _id: current._id }));

  const refused = await rejected("DeleteWorkItemQueue", client.DeleteWorkItemQueue({ wiq }));
  expect("not empty", refused.includes("is not empty, enable purge to delete"), refused);
  await within("DeleteWorkItemQueue purge", client.DeleteWorkItemQueue({ wiq, purge: true }));
  log("queue deleted with purge");
  log("PASS");
  process.exit(0);
}

main();
