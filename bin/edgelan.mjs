#!/usr/bin/env node
// The edgelan CLI: dist/edgelan.mjs, built from client/ by scripts/build-cli.mjs
// (npm install and npm ci run it as `prepare`; `npm run build` after a change).
import { existsSync } from "node:fs";

const built = new URL("../dist/edgelan.mjs", import.meta.url);
if (!existsSync(built)) {
  console.error("edgelan: the CLI is not built (dist/edgelan.mjs is missing): run `npm run build` in the edgelan checkout (npm install does it too)");
  process.exit(1);
}
const { main } = await import(built.href);
process.exitCode = await main(process.argv.slice(2));
