// The local runtime's own memory per request, for reading the fuzz run's RSS: a trivial Worker (one
// line, no Durable Object, no storage) under the same `wrangler dev`, fetched `requests` times one after
// another. wrangler dev's workerd keeps some memory per request whatever the Worker does (measured
// while building issue 9: ~5 KiB per request, not released within minutes), so the relay's RSS after
// tens of thousands of connections is read against this figure from the same run.
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { rssBytes, startLocalRelay } from "./relay-process.ts";

export interface RuntimeBaseline {
  requests: number;
  rssGrowthMiB: number;
  kibPerRequest: number;
}

const MIB = 1024 * 1024;

/** Starts a trivial Worker under wrangler dev, fetches it `requests` times, and reports workerd's RSS growth. */
export async function runtimeBaseline(requests: number): Promise<RuntimeBaseline> {
  const dir = mkdtempSync(join(tmpdir(), "edgelan-baseline-"));
  writeFileSync(join(dir, "index.js"), 'export default { fetch() { return new Response("ok"); } };\n');
  writeFileSync(join(dir, "wrangler.toml"), 'name = "edgelan-runtime-baseline"\nmain = "index.js"\ncompatibility_date = "2026-04-20"\n');
  const relay = await startLocalRelay("unused", {}, join(dir, "wrangler.toml"));
  try {
    const start = rssBytes(relay.workerPid);
    let peak = start;
    for (let i = 0; i < requests; i++) {
      await (await fetch(`${relay.baseUrl}/`)).arrayBuffer();
      if (i % 100 === 0) peak = Math.max(peak, rssBytes(relay.workerPid));
    }
    peak = Math.max(peak, rssBytes(relay.workerPid));
    const growth = peak - start;
    return { requests, rssGrowthMiB: Number((growth / MIB).toFixed(1)), kibPerRequest: Number((growth / 1024 / Math.max(1, requests)).toFixed(2)) };
  } finally {
    await relay.stop();
    rmSync(dir, { recursive: true, force: true });
  }
}
