// e2e setup file (runs in every test worker before its tests): the suite's own
// EDGELAN_* settings, never the user's. A shell where the README's
// `export EDGELAN_TOKEN=… EDGELAN_RELAY=… EDGELAN_ADMIN_TOKEN=…` ran must not
// change what the CLIs the tests spawn do.
for (const name of Object.keys(process.env)) {
  if (name.startsWith("EDGELAN_")) delete process.env[name];
}
