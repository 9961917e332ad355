import { connect, type Socket } from "node:net";

interface QmpMessage {
  QMP?: unknown;
  return?: unknown;
  error?: { desc?: string };
  event?: string;
  data?: Record<string, unknown>;
}

/**
 * A minimal QMP client: connect to the VM's control socket, negotiate capabilities, run
 * commands one after another, and wait for events (a hot-unplug ends with one). Short-lived
 * connections keep the control plane stateless across restarts.
 */
export class QmpSession {
  private buffer = "";
  private readonly events: QmpMessage[] = [];
  private waiting: ((message: QmpMessage) => void) | undefined;
  private failure: Error | undefined;

  private constructor(private readonly socket: Socket) {
    socket.on("data", (chunk) => {
      this.buffer += chunk.toString("utf8");
      let newline: number;
      while ((newline = this.buffer.indexOf("\n")) >= 0) {
        const line = this.buffer.slice(0, newline).trim();
        this.buffer = this.buffer.slice(newline + 1);
        if (!line) continue;
        let message: QmpMessage;
        try {
          message = JSON.parse(line) as QmpMessage;
        } catch {
          this.fail(new Error(`QMP sent a line that is not JSON: ${line.slice(0, 200)}`));
          return;
        }
        if (message.event) this.events.push(message);
        this.waiting?.(message);
      }
    });
    socket.on("error", (error) => this.fail(error));
    socket.on("close", () => this.fail(new Error("QMP closed the connection")));
  }

  private fail(error: Error): void {
    this.failure ??= error;
    this.waiting?.({});
  }

  /** Connects and negotiates capabilities. */
  static async open(socketPath: string, timeoutMs = 5000): Promise<QmpSession> {
    const socket = connect(socketPath);
    const session = new QmpSession(socket);
    try {
      await session.next((m) => m.QMP !== undefined, timeoutMs, "the QMP greeting");
      await session.execute("qmp_capabilities", undefined, timeoutMs);
      return session;
    } catch (error) {
      session.close();
      throw error;
    }
  }

  /** The next message from now on that `wanted` accepts. */
  private next(wanted: (m: QmpMessage) => boolean, timeoutMs: number, what: string): Promise<QmpMessage> {
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.waiting = undefined;
        reject(new Error(`QMP: no ${what} within ${Math.round(timeoutMs / 1000)} s`));
      }, timeoutMs);
      this.waiting = (message) => {
        if (this.failure) {
          clearTimeout(timer);
          this.waiting = undefined;
          reject(this.failure);
        } else if (wanted(message)) {
          clearTimeout(timer);
          this.waiting = undefined;
          resolve(message);
        }
      };
      if (this.failure) this.waiting({});
    });
  }

  /** Runs one command and answers its result. */
  async execute(command: string, args?: Record<string, unknown>, timeoutMs = 5000): Promise<unknown> {
    const answer = this.next(
      (m) => m.event === undefined && m.QMP === undefined,
      timeoutMs,
      `answer to ${command}`,
    );
    this.socket.write(JSON.stringify({ execute: command, ...(args ? { arguments: args } : {}) }) + "\n");
    const message = await answer;
    if (message.error) throw new Error(`QMP ${command}: ${message.error.desc ?? "error"}`);
    return message.return;
  }

  /** Waits for an event (one received since the session opened counts). */
  async event(name: string, matches: (data: Record<string, unknown>) => boolean, timeoutMs: number) {
    const seen = (m: QmpMessage) => m.event === name && matches(m.data ?? {});
    if (this.events.some(seen)) return;
    await this.next(seen, timeoutMs, `${name} event`);
  }

  close(): void {
    this.waiting = undefined;
    this.socket.end();
    this.socket.destroy();
  }
}

/** Runs one QMP command on its own connection. */
export async function qmp(
  socketPath: string,
  command: string,
  args?: Record<string, unknown>,
  timeoutMs = 5000,
): Promise<unknown> {
  const session = await QmpSession.open(socketPath, timeoutMs);
  try {
    return await session.execute(command, args, timeoutMs);
  } finally {
    session.close();
  }
}
