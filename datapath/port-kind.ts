/** The kinds of port (the tunnel's u8 code is the index): member, bridge or monitor. */
export const PORT_KINDS = ["member", "bridge", "monitor"] as const;
export type PortKind = (typeof PORT_KINDS)[number];

/** Whether `value` names a port kind. */
export function isPortKind(value: unknown): value is PortKind {
  return typeof value === "string" && (PORT_KINDS as readonly string[]).includes(value);
}
