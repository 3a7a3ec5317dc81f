#!/usr/bin/env node
// Watch check for the official Node client (@openiap/nodeapi 0.0.39).
//
// Usage: node watch_check.js URL
//
// URL is `ws://USER:PASSWORD@HOST:PORT/ws/v2` (WebSocket; the client uses the URL
// verbatim, so the path must be given) or `grpc://USER:PASSWORD@HOST:PORT` (plain h2c).
// The client signs in by itself with the URL's credentials; without credentials in the
// URL, OPENIAP_USERNAME / OPENIAP_PASSWORD are put into it.
//
// Signs in, watches collection `clientwatch_node_<ws|grpc>` (paths []), inserts a
// document, updates it with $set, replaces it, deletes it and checks that each change
// arrives as a watch event with the right operation and document. Then unwatches,
// inserts again and checks that no watch event arrives within QUIET_MS.
// Exit status 0 on success, 1 (with a FAIL line) on any failure; the whole run is
// bounded by WATCH_CHECK_TIMEOUT seconds (default 30).
"use strict";

// The client may export telemetry to a public host unless told not to; no colours in logs.
if (process.env.enable_analytics === undefined) process.env.enable_analytics = "false";
process.env.log_with_colors = "false";

const HARD_TIMEOUT_MS = 1000 * Number(process.env.WATCH_CHECK_TIMEOUT || 30);
const CALL_TIMEOUT_MS = 10000; // one request / one expected event
const QUIET_MS = 700; // how long to wait for events that must not come

function log(message) {
  console.log(`[watch_check.js] ${message}`);
}

function fail(message) {
  console.log(`[watch_check.js] FAIL: ${message}`);
  // process.exit: the client's sockets, gRPC channel and timers must not keep the
  // process alive.
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
  if (!username || !password) {
    fail("no credentials: put USER:PASSWORD@ in the URL or set OPENIAP_USERNAME/OPENIAP_PASSWORD");
  }
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

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

async function main() {
  if (process.argv.length !== 3) {
    console.error("usage: node watch_check.js URL");
    process.exit(2);
  }
  const url = withCredentials(process.argv[2]);
  const parsed = new URL(url);
  const transport = { "ws:": "ws", "wss:": "ws", "grpc:": "grpc" }[parsed.protocol];
  if (!transport) fail(`unsupported URL scheme ${parsed.protocol} (use ws://, wss:// or grpc://)`);
  const collection = `clientwatch_node_${transport}`;
  const safeUrl = url.replace(`:${parsed.password}@`, ":***@");
  log(`client @openiap/nodeapi ${require("@openiap/nodeapi/package.json").version}, transport ${transport}, url ${safeUrl}, collection ${collection}`);

  const { openiap, WatchEvent } = require("@openiap/nodeapi");
  const client = new openiap(url);
  client.allowconnectgiveup = true;

  const user = await within("connect + signin", client.connect());
  const expectedUser = decodeURIComponent(parsed.username);
  if (!user || user.username !== expectedUser) {
    fail(`signed in as ${JSON.stringify(user && user.username)}, expected ${JSON.stringify(expectedUser)}`);
  }
  log(`signed in as ${user.username}`);

  // Every `watchevent` envelope the connection delivers, whatever its id: the client's own
  // dispatch drops events for ids it has no callback for (after UnWatch) with only a warning.
  const raw = [];
  const inner = client.client.onMessage;
  client.client.onMessage = async (cli, message) => {
    if (message && message.command === "watchevent") raw.push(WatchEvent.decode(message.data.value));
    return inner(cli, message);
  };

  const events = [];
  let waiter = null;
  const onEvent = (operation, document) => {
    events.push({ operation, document });
    if (waiter) waiter();
  };
  async function nextEvent(operation) {
    const deadline = Date.now() + CALL_TIMEOUT_MS;
    while (events.length === 0) {
      const left = deadline - Date.now();
      if (left <= 0) fail(`no ${JSON.stringify(operation)} watch event within ${CALL_TIMEOUT_MS / 1000} s`);
      await new Promise((resolve) => {
        const timer = setTimeout(resolve, left);
        waiter = () => { clearTimeout(timer); resolve(); };
      });
      waiter = null;
    }
    return events.shift();
  }
  async function expect(operation, expected) {
    const event = await nextEvent(operation);
    const text = JSON.stringify(event.document);
    if (event.document === null || typeof event.document !== "object" || Array.isArray(event.document)) {
      fail(`${operation} event: document is not a JSON object: ${text}`);
    }
    if (event.operation !== operation) fail(`expected a ${JSON.stringify(operation)} event, got ${JSON.stringify(event.operation)}: ${text}`);
    for (const [key, value] of Object.entries(expected)) {
      if (event.document[key] !== value) {
        fail(`${operation} event: ${key} is ${JSON.stringify(event.document[key])}, expected ${JSON.stringify(value)}: ${text}`);
      }
    }
    log(`event ${operation}: ${text}`);
  }

  const watchId = await within("Watch", client.Watch({ collectionname: collection, paths: [] }, onEvent));
  if (typeof watchId !== "string" || watchId === "") fail(`Watch returned no id: ${JSON.stringify(watchId)}`);
  log(`watching ${collection} as ${watchId}`);

  const inserted = await within("InsertOne", client.InsertOne({ collectionname: collection, item: { name: "node-watch", n: 1 } }));
  if (!inserted || typeof inserted._id !== "string") fail(`InsertOne returned no _id: ${JSON.stringify(inserted)}`);
  const id = inserted._id;
  await expect("insert", { _id: id, name: "node-watch", n: 1 });

  await within("UpdateDocument", client.UpdateDocument({ collectionname: collection, query: { _id: id }, document: { $set: { n: 2 } } }));
  await expect("update", { _id: id, name: "node-watch", n: 2 });

  const replaced = await within("UpdateOne", client.UpdateOne({ collectionname: collection, item: { _id: id, name: "node-watch-replaced", n: 3 } }));
  if (!replaced || replaced.n !== 3) fail(`UpdateOne returned ${JSON.stringify(replaced)}`);
  await expect("replace", { _id: id, name: "node-watch-replaced", n: 3 });

  const deleted = await within("DeleteOne", client.DeleteOne({ collectionname: collection, id }));
  if (deleted !== 1) fail(`DeleteOne reported ${JSON.stringify(deleted)} deleted documents, expected 1`);
  await expect("delete", { _id: id });

  await sleep(QUIET_MS);
  if (events.length !== 0) fail(`unexpected extra events: ${JSON.stringify(events)}`);
  if (raw.length !== 4 || raw.some((event) => event.id !== watchId)) {
    fail(`expected exactly 4 watchevent envelopes for ${watchId}, got ${JSON.stringify(raw)}`);
  }

  await within("UnWatch", client.UnWatch({ id: watchId }));
  log("unwatched");
  const after = await within("InsertOne", client.InsertOne({ collectionname: collection, item: { name: "node-after-unwatch" } }));
  if (!after || typeof after._id !== "string") fail(`InsertOne after unwatch returned ${JSON.stringify(after)}`);
  await sleep(QUIET_MS);
  if (events.length !== 0 || raw.length !== 4) {
    fail(`watch events after unwatch: ${JSON.stringify(raw.slice(4))}`);
  }
  log(`no event within ${QUIET_MS / 1000} s after unwatch`);
  client.Close();
  log("OK");
  process.exit(0);
}

const started = Date.now();
process.on("exit", (code) => {
  if (code === 0) console.log(`[watch_check.js] passed in ${((Date.now() - started) / 1000).toFixed(1)} s`);
});
main().catch((error) => fail(`unexpected ${error && error.stack ? error.stack : error}`));
