// A diagnostic host (client/diag-host.ts: ARP and ICMP echo) joined to a segment
// through a real Session: the smallest real traffic source for end-to-end tests.
import { DiagHost } from "../../client/diag-host.ts";
import { nodeSocketFactory } from "../../client/node-socket.ts";
import { Session } from "../../client/session.ts";
import type { MacKey } from "../../datapath/mac.ts";

export interface JoinedHost {
  session: Session;
  host: DiagHost;
  portId: number;
  mac: MacKey;
  close(): void;
}

/** Joins `url` as a member owning `mac` and answers ARP/ICMP for `ip`. */
export async function joinDiagHost(url: string, mac: MacKey, ip: string, token?: string): Promise<JoinedHost> {
  const session = new Session({ url, token, socketFactory: nodeSocketFactory, macs: [mac], reconnect: false, keepaliveSeconds: 0 });
  const handlers: Array<(frames: Uint8Array[]) => void> = [];
  session.on("frames", (frames) => handlers.forEach((handler) => handler(frames)));
  const welcome = await session.start();
  const host = new DiagHost({ send: (frames) => session.send(frames), onFrames: (handler) => handlers.push(handler) }, { mac, ip });
  return {
    session, host, portId: welcome.portId, mac,
    close() {
      host.close();
      session.close();
    },
  };
}
