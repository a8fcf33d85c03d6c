// workerd's own listening port behind `wrangler dev`'s proxy: the direct path that skips the proxy
// workerd (two more loopback crossings and process wake-ups each way; bench:floor measures them).
// wrangler starts a new workerd on a new port whenever it reloads the worker (a source changed): the
// CLI's fast local path (client/local-fast-path.ts) connects here, falls back to the proxy's port when
// this one refuses, and looks again; `npm start` prints it, and the benchmarks measure through both.
// Linux only (`ss`, /proc); null wherever it cannot be found.
import { execFile } from "node:child_process";
import { readFileSync } from "node:fs";

/**
 * The other workerd in the proxy's process group whose 127.0.0.1 listener answers /healthz with
 * `"ok"`, or null (also when the workerd on `proxyPort` is not a proxy: its entry port was not given
 * as `proxyPort`). `ss` may take up to 5 s, and each candidate up to 1 s.
 */
export async function findWorkerdPort(proxyPort) {
  let listing;
  try {
    listing = await new Promise((resolve, reject) => {
      execFile("ss", ["-ltnpH"], { encoding: "utf8", timeout: 5_000 }, (error, stdout) => (error === null ? resolve(stdout) : reject(error)));
    });
  } catch {
    return null;
  }
  const listeners = listing.split("\n").flatMap((line) => {
    const port = /127\.0\.0\.1:(\d+)\s/.exec(line);
    const pid = /"workerd",pid=(\d+),fd=(\d+)/.exec(line);
    return port === null || pid === null ? [] : [{ port: Number(port[1]), pid: Number(pid[1]), fd: Number(pid[2]) }];
  });
  // In the order workerd opened them: the inspector, then the HTTP entry, then the debug port, which
  // speaks Cap'n Proto and logs an error for an HTTP request; the search stops at the entry.
  listeners.sort((x, y) => x.fd - y.fd);
  const proxy = listeners.find((l) => l.port === proxyPort);
  // The proxy's workerd is told its port (--socket-addr=entry=HOST:PORT); the worker's own is given port 0
  // and picks one. A URL that names the worker's own port already is the direct path: nothing to find.
  if (proxy === undefined || !entryPortIs(proxy.pid, proxyPort)) return null;
  const group = processGroupOf(proxy.pid);
  for (const candidate of listeners) {
    if (candidate.pid === proxy.pid || group === null || processGroupOf(candidate.pid) !== group) continue;
    if (await answersHealth(candidate.port)) return candidate.port;
  }
  return null;
}

/** Whether 127.0.0.1:PORT answers GET /healthz with an edgelan-style `"ok"` body within a second. */
export async function answersHealth(port) {
  try {
    const response = await fetch(`http://127.0.0.1:${port}/healthz`, { signal: AbortSignal.timeout(1000) });
    const text = await response.text();
    return response.ok && text.includes("\"ok\"");
  } catch {
    return false;
  }
}

/** Whether the command line of workerd process PID gives its entry socket port PORT. */
function entryPortIs(pid, port) {
  try {
    const args = readFileSync(`/proc/${pid}/cmdline`, "utf8").split("\0");
    return args.some((arg) => arg.startsWith("--socket-addr=entry=") && arg.endsWith(`:${port}`));
  } catch {
    return false;
  }
}

/** The process group of a PID (field 5 of /proc/PID/stat), or null. */
function processGroupOf(pid) {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
    return Number(fields[2]);
  } catch {
    return null;
  }
}
