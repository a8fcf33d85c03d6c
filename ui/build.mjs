#!/usr/bin/env node
// Builds the dashboard into dist/assets/ui/ (served by Workers static assets at /ui/):
// the page and its stylesheet as they are, and one browser bundle of ui/src/main.ts
// (which includes the pure datapath codec and pcapng writer). Files are written
// next to their place and renamed, so a relay starting in parallel never serves half a file.
// wrangler runs this before `wrangler dev` and `wrangler deploy` ([build] in wrangler.toml).
import { build } from "esbuild";
import { copyFileSync, mkdirSync, renameSync, writeFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const ui = dirname(fileURLToPath(import.meta.url));
const out = join(ui, "..", "dist", "assets", "ui");
mkdirSync(out, { recursive: true });

function place(name, write) {
  const temporary = join(out, `.${name}.${process.pid}.tmp`);
  write(temporary);
  renameSync(temporary, join(out, name));
}

const bundle = await build({
  entryPoints: [join(ui, "src", "main.ts")], bundle: true, format: "esm", platform: "browser", target: "es2022",
  write: false, minify: false, sourcemap: false, logLevel: "warning", legalComments: "none",
});
place("app.js", (path) => writeFileSync(path, bundle.outputFiles[0].contents));
for (const name of ["index.html", "style.css"]) place(name, (path) => copyFileSync(join(ui, name), path));
// Response headers (CSP and friends) live at the root of the assets directory.
const headersTemporary = join(out, "..", `._headers.${process.pid}.tmp`);
copyFileSync(join(ui, "_headers"), headersTemporary);
renameSync(headersTemporary, join(out, "..", "_headers"));
