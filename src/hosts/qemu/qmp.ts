import { connect } from "node:net";

/**
 * A minimal QMP client: connect to the VM's control socket, negotiate capabilities,
 * run one command, return its result. One short-lived connection per command keeps
 * the control plane stateless across restarts.
 */
export async function qmp(
  socketPath: string,
  command: string,
  args?: Record<string, unknown>,
  timeoutMs = 5000,
): Promise<unknown> {
  return new Promise((resolve, reject) => {
    const socket = connect(socketPath);
    let buffer = "";
    let stage: "greeting" | "capabilities" | "command" = "greeting";
    const timer = setTimeout(() => {
      socket.destroy();
      reject(new Error(`QMP ${command} timed out`));
    }, timeoutMs);
    const finish = (error: Error | null, value?: unknown) => {
      clearTimeout(timer);
      socket.end();
      if (error) reject(error);
      else resolve(value);
    };
    socket.on("error", (error) => finish(error));
    socket.on("data", (chunk) => {
      buffer += chunk.toString("utf8");
      let newline: number;
      while ((newline = buffer.indexOf("\n")) >= 0) {
        const line = buffer.slice(0, newline).trim();
        buffer = buffer.slice(newline + 1);
        if (!line) continue;
        const message = JSON.parse(line) as {
          QMP?: unknown;
          return?: unknown;
          error?: { desc?: string };
          event?: string;
        };
        if (message.event) continue;
        if (stage === "greeting" && message.QMP) {
          stage = "capabilities";
          socket.write(JSON.stringify({ execute: "qmp_capabilities" }) + "\n");
        } else if (stage === "capabilities") {
          if (message.error) return finish(new Error(message.error.desc ?? "QMP negotiation failed"));
          stage = "command";
          socket.write(JSON.stringify({ execute: command, ...(args ? { arguments: args } : {}) }) + "\n");
        } else if (stage === "command") {
          if (message.error) return finish(new Error(`QMP ${command}: ${message.error.desc ?? "error"}`));
          return finish(null, message.return);
        }
      }
    });
  });
}
