import { connect } from "node:net";

/**
 * The host side of Trebuchet's guest agent (the demo template's init runs the guest
 * side): a line protocol over a virtio-serial port. The host sends
 *
 *     network <serial>
 *     <the seed's trebuchet/interfaces lines>
 *     end
 *
 * and the guest, having replaced its interfaces' addresses and default routes with
 * those, answers `applied <serial>`. One short connection per message, like QMP.
 */
export function agentMessage(serial: string, interfacesFile: string): string {
  return `network ${serial}\n${interfacesFile}end\n`;
}

/**
 * Sends the guest its addresses; true when it answered that it applied them within
 * `timeoutMs`, false when there is no agent (no socket: a QEMU started without the port)
 * or it did not answer (a guest without the agent, or not booted yet).
 */
export function sendNetworkToAgent(
  socketPath: string,
  interfacesFile: string,
  timeoutMs: number,
): Promise<boolean> {
  const serial = `${Date.now().toString(36)}${Math.floor(Math.random() * 1e6).toString(36)}`;
  return new Promise((resolve) => {
    const socket = connect(socketPath);
    let answer = "";
    const finish = (applied: boolean) => {
      clearTimeout(timer);
      socket.destroy();
      resolve(applied);
    };
    const timer = setTimeout(() => finish(false), timeoutMs);
    socket.on("error", () => finish(false));
    socket.on("connect", () => socket.write(agentMessage(serial, interfacesFile)));
    socket.on("data", (chunk) => {
      answer += chunk.toString("utf8");
      if (answer.split("\n").some((line) => line.trim() === `applied ${serial}`)) finish(true);
      else if (answer.length > 4096) finish(false);
    });
  });
}
