/** The version of this implementation (relay and client alike): /healthz reports it, clients send it in HELLO. package.json's "version" must match (a unit test checks). */
export const EDGELAN_VERSION = "0.1.0";
