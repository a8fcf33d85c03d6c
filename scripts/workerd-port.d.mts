/** workerd's own port behind wrangler dev's proxy on `proxyPort`, or null (scripts/workerd-port.mjs). */
export function findWorkerdPort(proxyPort: number): Promise<number | null>;
/** Whether 127.0.0.1:PORT answers GET /healthz with `"ok"` within a second. */
export function answersHealth(port: number): Promise<boolean>;
