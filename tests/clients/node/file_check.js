#!/usr/bin/env node
// Upload/download check for the official Node client (@openiap/nodeapi 0.0.39).
//
// Usage: node file_check.js URL WORKDIR
//
// URL is `ws://USER:PASSWORD@HOST:PORT/ws/v2` or `grpc://USER:PASSWORD@HOST:PORT`.
// Writes files of 0, 1, 300 KiB + 7 and 5 MiB bytes into WORKDIR, uploads each
// (UploadFile: 256 KiB `stream` chunks with an empty type URL, `endstream` without
// data), downloads each by id into WORKDIR/out (DownloadFile: needs the late
// `endstream`) and compares the bytes. Exit status 0 on success, 1 (with a FAIL line)
// on any failure; bounded by WATCH_CHECK_TIMEOUT seconds (default 30).
"use strict";

if (process.env.enable_analytics === undefined) process.env.enable_analytics = "false";
process.env.log_with_colors = "false";

const fs = require("fs");
const path = require("path");

const HARD_TIMEOUT_MS = 1000 * Number(process.env.WATCH_CHECK_TIMEOUT || 30);
const CALL_TIMEOUT_MS = 20000;

function log(message) {
  console.log(`[file_check.js] ${message}`);
}

function fail(message) {
  console.log(`[file_check.js] FAIL: ${message}`);
  process.exit(1);
}

process.on("unhandledRejection", (error) => fail(`unhandled rejection: ${error && error.stack ? error.stack : error}`));
process.on("uncaughtException", (error) => fail(`uncaught exception: ${error && error.stack ? error.stack : error}`));
setTimeout(() => fail(`overall timeout of ${HARD_TIMEOUT_MS / 1000} s`), HARD_TIMEOUT_MS);

function within(what, promise, ms = CALL_TIMEOUT_MS) {
  let timer;
  const timeout = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Error(`no reply within ${ms / 1000} s`)), ms);
  });
  return Promise.race([promise, timeout])
    .catch((error) => fail(`${what}: ${error && error.message ? error.message : error}`))
    .finally(() => clearTimeout(timer));
}

function content(size, seed) {
  const buffer = Buffer.alloc(size);
  let state = (0x9e3779b9 ^ seed) >>> 0;
  for (let i = 0; i < size; i++) {
    state ^= state << 13; state >>>= 0;
    state ^= state >>> 17;
    state ^= state << 5; state >>>= 0;
    buffer[i] = state >>> 24;
  }
  return buffer;
}

async function main() {
  if (process.argv.length !== 4) {
    console.error("usage: node file_check.js URL WORKDIR");
    process.exit(2);
  }
  const url = process.argv[2];
  const workdir = process.argv[3];
  const outdir = path.join(workdir, "out");
  fs.mkdirSync(outdir, { recursive: true });
  const { openiap } = require("@openiap/nodeapi");
  const client = new openiap(url);
  client.allowconnectgiveup = true;
  const user = await within("connect + signin", client.connect());
  log(`signed in as ${user && user.username}`);
  const sizes = [0, 1, 300 * 1024 + 7, 5 * 1024 * 1024];
  for (let n = 0; n < sizes.length; n++) {
    const size = sizes[n];
    const name = `node-${size}.bin`;
    const source = path.join(workdir, name);
    const bytes = content(size, n + 1);
    fs.writeFileSync(source, bytes);
    const uploaded = await within(`UploadFile ${size}`, client.UploadFile({ filename: source }));
    if (!uploaded || !/^[0-9a-f]{24}$/.test(uploaded.id)) fail(`upload ${size}: bad id ${JSON.stringify(uploaded)}`);
    log(`uploaded ${size} bytes as ${uploaded.id}`);
    await within(`DownloadFile ${size}`, client.DownloadFile({ id: uploaded.id, folder: outdir }));
    const got = fs.readFileSync(path.join(outdir, name));
    if (!got.equals(bytes)) fail(`download ${size}: ${got.length} bytes differ from the upload`);
    log(`downloaded ${size} bytes`);
  }
  client.Close();
  log("OK");
  process.exit(0);
}

main().catch((error) => fail(error && error.stack ? error.stack : String(error)));
