#!/usr/bin/env node
// Builds the `edgelan` CLI (client/ + datapath/, TypeScript) into JavaScript,
// dist/edgelan.mjs and the chunks it loads on demand, that bin/edgelan.mjs loads: no TypeScript loader at run
// time. Runs as the package's `prepare` script, so `npm install` / `npm ci` build it;
// `npm run build` rebuilds it after a change. Packages (ws, bufferutil) stay external.
import { existsSync, readFileSync, readdirSync, rmSync } from "node:fs";
import { dirname, join, relative } from "node:path";
import { fileURLToPath } from "node:url";
import { build } from "esbuild";

const root = join(dirname(fileURLToPath(import.meta.url)), "..");
const outdir = join(root, "dist");

// The TAP addon loader finds client/native/build/Release/edgelan_tap.node relative to its own
// import.meta.url. In the bundle every import.meta.url is its output file's, so it is defined as the
// loader's source location instead; that is only right while the loader is the one user of it.
const NATIVE_LOADER = "client/native/tap-addon.ts";
const users = sourceFiles(join(root, "client")).concat(sourceFiles(join(root, "datapath")))
  .filter((path) => readFileSync(path, "utf8").includes("import.meta"))
  .map((path) => relative(root, path));
const others = users.filter((path) => path !== NATIVE_LOADER);
if (others.length > 0) {
  console.error(`edgelan: build-cli: import.meta is used outside ${NATIVE_LOADER} (${others.join(", ")}); teach scripts/build-cli.mjs about it`);
  process.exit(1);
}

const started = Date.now();
// dist/assets is the dashboard's (ui/build.mjs): clear only what this build writes.
for (const entry of existsSync(outdir) ? readdirSync(outdir) : []) {
  if (entry !== "assets") rmSync(join(outdir, entry), { recursive: true, force: true });
}
await build({
  entryPoints: [join(root, "client", "cli.ts")],
  outdir,
  entryNames: "edgelan",
  outExtension: { ".js": ".mjs" },
  // Chunks load on demand (the WebSocket library only when a command connects); all in dist/, as the banner assumes.
  splitting: true,
  chunkNames: "chunk-[hash]",
  bundle: true,
  platform: "node",
  format: "esm",
  target: "node20",
  packages: "external",
  sourcemap: "linked",
  logLevel: "warning",
  define: { "import.meta.url": "__edgelanNativeLoaderUrl" },
  banner: { js: `const __edgelanNativeLoaderUrl = new URL("../${NATIVE_LOADER}", import.meta.url).href;` },
});
console.log(`edgelan: built ${relative(root, join(outdir, "edgelan.mjs"))} in ${Date.now() - started} ms`);

/** Every .ts file under `dir`. */
function sourceFiles(dir) {
  return readdirSync(dir, { withFileTypes: true, recursive: true })
    .filter((entry) => entry.isFile() && entry.name.endsWith(".ts"))
    .map((entry) => join(entry.parentPath, entry.name));
}
