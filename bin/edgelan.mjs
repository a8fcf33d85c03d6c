#!/usr/bin/env node
// The edgelan CLI. The sources are TypeScript; tsx loads them without a build step.
import { register } from "tsx/esm/api";

register();
const { main } = await import("../client/cli.ts");
process.exitCode = await main(process.argv.slice(2));
