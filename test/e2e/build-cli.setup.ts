// e2e global setup: builds the CLI (scripts/build-cli.mjs) so tests that spawn
// bin/edgelan.mjs run today's sources, not a stale dist/. A failed build fails the run.
import { execFileSync } from "node:child_process";
import { join } from "node:path";

export default function setup(): void {
  const root = join(import.meta.dirname, "..", "..");
  execFileSync(process.execPath, [join(root, "scripts", "build-cli.mjs")], { cwd: root, stdio: ["ignore", "ignore", "inherit"] });
}
