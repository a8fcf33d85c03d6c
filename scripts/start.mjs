#!/usr/bin/env node
// `npm start`: runs the relay locally under `wrangler dev` on 127.0.0.1.
// Port: --port N, or $PORT, default 8787. Without an admin token (env or .dev.vars)
// the relay runs in explicit open development mode, and says so loudly.
import { spawn } from "node:child_process";
import { existsSync, readFileSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { dirname, join } from "node:path";

const root = join(dirname(fileURLToPath(import.meta.url)), "..");

function argValue(name) {
  const index = process.argv.indexOf(name);
  return index >= 0 ? process.argv[index + 1] : undefined;
}

function hasAdminToken() {
  if (process.env.EDGELAN_ADMIN_TOKEN) return true;
  const devVars = join(root, ".dev.vars");
  return existsSync(devVars) && /^\s*EDGELAN_ADMIN_TOKEN\s*=\s*\S+/m.test(readFileSync(devVars, "utf8"));
}

const port = argValue("--port") ?? process.env.PORT ?? "8787";
if (!/^\d{1,5}$/.test(port) || Number(port) > 65535) {
  console.error(`edgelan: invalid port ${JSON.stringify(port)}: expected a number 0-65535`);
  process.exit(2);
}

const args = ["wrangler", "dev", "--ip", "127.0.0.1", "--port", port, "--show-interactive-dev-session=false"];
if (!hasAdminToken()) {
  args.push("--var", "EDGELAN_DEV_MODE:1");
  console.warn(
    [
      "",
      "!!! edgelan OPEN DEVELOPMENT MODE !!!",
      "!!! No EDGELAN_ADMIN_TOKEN is set: the admin API needs no token and every segment accepts joins without one.",
      "!!! Set EDGELAN_ADMIN_TOKEN in .dev.vars (or the environment) to turn auth on. Never expose this relay.",
      "",
    ].join("\n"),
  );
} else if (process.env.EDGELAN_ADMIN_TOKEN) {
  args.push("--var", `EDGELAN_ADMIN_TOKEN:${process.env.EDGELAN_ADMIN_TOKEN}`);
  if (process.env.EDGELAN_TOKEN_SECRET) args.push("--var", `EDGELAN_TOKEN_SECRET:${process.env.EDGELAN_TOKEN_SECRET}`);
}

const child = spawn("npx", args, { cwd: root, stdio: "inherit" });
for (const signal of ["SIGINT", "SIGTERM"]) process.on(signal, () => child.kill(signal));
child.on("exit", (code, signal) => process.exit(code ?? (signal ? 1 : 0)));
