// Waiting on real guests without sleeping a fixed time: poll a condition until it holds or a
// deadline passes (the deadline is generous; a pass never depends on timing).

/** Polls `check` every `intervalMs` until it returns a value (not undefined) or `timeoutMs` passes, then throws naming `what`. */
export async function waitFor<T>(what: string, check: () => T | undefined, timeoutMs = 30_000, intervalMs = 200): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = check();
    if (value !== undefined) return value;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, intervalMs));
  }
}
