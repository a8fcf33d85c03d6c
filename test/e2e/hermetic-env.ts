// e2e setup file (runs in every test worker before its tests): the suite's own
// EDGELAN_* settings, never the user's. A shell where the README's
// `export EDGELAN_TOKEN=… EDGELAN_RELAY=… EDGELAN_ADMIN_TOKEN=…` ran must not
// change what the CLIs the tests spawn do. The test suite's own knobs stay
// (EDGELAN_QEMU_KERNEL: the kernel .ci/run unpacks for the VM tests).
const SUITE_KNOBS: ReadonlySet<string> = new Set(["EDGELAN_QEMU_KERNEL"]);

for (const name of Object.keys(process.env)) {
  if (name.startsWith("EDGELAN_") && !SUITE_KNOBS.has(name)) delete process.env[name];
}
