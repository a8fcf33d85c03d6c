#!/usr/bin/env node
// Builds the TAP addon (client/native → client/native/build/Release/edgelan_tap.node) with node-gyp.
// Runs as the root package's `install` script, so `npm install` / `npm ci` build it on Linux.
// It never fails an install: on other platforms it says it skipped, and when the build fails it
// prints why and how to retry, then exits 0 (the TAP backend then reports "addon not built").
// Flags: --strict exits 1 when the build fails (for CI or a developer who wants to know).
import { spawnSync } from "node:child_process";
import { existsSync } from "node:fs";
import { createRequire } from "node:module";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";

const root = resolve(dirname(fileURLToPath(import.meta.url)), "..");
const nativeDir = join(root, "client", "native");
const output = join(nativeDir, "build", "Release", "edgelan_tap.node");
const strict = process.argv.includes("--strict");

function warn(lines) {
  const text = Array.isArray(lines) ? lines.join("\n  ") : lines;
  console.warn(`\nedgelan: WARNING: ${text}\n`);
}

function giveUp(reason) {
  warn([
    `the TAP addon was not built: ${reason}`,
    "Everything else works; the tap backend will say \"addon not built\" until you run:",
    "  node scripts/build-native.mjs",
    "It needs a C compiler, make, python3 and Node's headers (Debian: apt-get install build-essential python3 nodejs-dev, or set npm_config_nodedir).",
  ]);
  process.exit(strict ? 1 : 0);
}

if (process.platform !== "linux") {
  console.log(`edgelan: skipping the TAP addon (it is Linux only; this is ${process.platform})`);
  process.exit(0);
}

/** node-gyp: the one npm exports while running scripts, a local install, or the one npm bundles. */
function findNodeGyp() {
  const candidates = [];
  if (process.env.npm_config_node_gyp) candidates.push(process.env.npm_config_node_gyp);
  try {
    candidates.push(createRequire(join(root, "package.json")).resolve("node-gyp/bin/node-gyp.js"));
  } catch {
    // not installed locally: fine
  }
  const prefix = dirname(dirname(process.execPath));
  candidates.push(join(prefix, "lib", "node_modules", "npm", "node_modules", "node-gyp", "bin", "node-gyp.js"));
  candidates.push(join(prefix, "node_modules", "npm", "node_modules", "node-gyp", "bin", "node-gyp.js"));
  return candidates.find((path) => existsSync(path));
}

/** Node's headers: npm's nodedir config if given, else the headers installed next to this node. */
function findNodeDir() {
  const configured = process.env.npm_config_nodedir;
  if (configured && existsSync(join(configured, "include", "node", "node_api.h"))) return configured;
  const prefix = dirname(dirname(process.execPath));
  if (existsSync(join(prefix, "include", "node", "node_api.h"))) return prefix;
  return undefined; // node-gyp would have to download headers, which may fail offline
}

const nodeGyp = findNodeGyp();
if (nodeGyp === undefined) giveUp("node-gyp was not found (it ships with npm)");

const args = [nodeGyp, "rebuild", "--directory", nativeDir];
const nodeDir = findNodeDir();
if (nodeDir !== undefined) args.push(`--nodedir=${nodeDir}`);

console.log(`edgelan: building the TAP addon with ${nodeGyp}${nodeDir ? ` (headers from ${nodeDir})` : ""}`);
const result = spawnSync(process.execPath, args, {
  cwd: root,
  stdio: ["ignore", "pipe", "pipe"],
  encoding: "utf8",
  timeout: 300_000,
});
if (result.error) giveUp(`node-gyp could not run: ${result.error.message}`);
if (result.status !== 0 || !existsSync(output)) {
  const log = `${result.stdout ?? ""}${result.stderr ?? ""}`.trim().split("\n").slice(-25).join("\n");
  console.warn(log);
  giveUp(`node-gyp exited with ${result.status ?? result.signal}`);
}
console.log(`edgelan: TAP addon built: ${output}`);
